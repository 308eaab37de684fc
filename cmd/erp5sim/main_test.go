package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRun_UsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--link", "fast"},
		{"--user", "nopassword"},
		{"--no-such-flag"},
		{"extra"},
	} {
		var stderr strings.Builder
		if code := run(t.Context(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if stderr.Len() == 0 {
			t.Errorf("%v: no message", args)
		}
	}
}

func TestRun_Serves(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--docs", "50", "--link", "10mbit,2ms", "--token", "t"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	u := strings.Fields(line)[2]
	if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.Contains(line, "50 documents") {
		t.Fatalf("banner %q", line)
	}
	req, _ := http.NewRequest("GET", u+"ERP5Site_getSyncGatewayCapability", nil)
	req.Header.Set("X-ACCESS-TOKEN", "t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("capability: %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}
