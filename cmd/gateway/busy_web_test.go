package main

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"sitesync.example/gateway/sqlite"
)

// TestWebApp_BusyWriteRetried: while another connection holds the database's write lock (a
// `docs import` without --chunk does, for as long as it runs), a write from the page is
// answered 503 busy; the page sends it again, with the same write key, until the lock is
// gone, and the document is stored once.
func TestWebApp_BusyWriteRetried(t *testing.T) {
	browser := startChromium(t)
	g := startWebGateway(t, t.TempDir())
	ctx := context.Background()
	code, err := sqlite.NewPeerService(g.s.DB).CreateInvite(ctx, "tablet-1", "clerk", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tab := openTab(t, browser, "tab 1", true)
	tab.do(t, "open the invite link", chromedp.Navigate(g.s.URL()+"pair#code="+code))
	tab.waitText(t, "#state", "Connected as tablet-1 (clerk).")

	other, err := sql.Open("sqlite", "file:"+g.s.DB.Path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			conn.ExecContext(ctx, `ROLLBACK`)
		}
	}()
	tab.eval(t, `window.busyResult = null;
		app.session.post({portal_type: 'Person', title: 'Busy Ann'}).then(
			(r) => { window.busyResult = {id: r.id}; },
			(e) => { window.busyResult = {error: e.reason + ': ' + e.message}; });
		true`, nil)
	// The gateway answered busy (after its busy timeout) and the page sent the write again.
	tab.wait(t, "the page to resend the busy write", `app.session.stats.resent >= 1 || window.busyResult !== null`)
	var early map[string]string
	tab.eval(t, `window.busyResult`, &early)
	if early != nil {
		t.Fatalf("the write was answered while the database was locked: %v", early)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	locked = false
	tab.wait(t, "the write's reply", `window.busyResult !== null`)
	var res map[string]string
	tab.eval(t, `window.busyResult`, &res)
	if res["id"] == "" {
		t.Fatalf("the write failed: %v", res)
	}
	var n int
	if err := g.s.DB.Reader().QueryRow(`SELECT count(*) FROM documents WHERE body ->> 'title' = 'Busy Ann'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d documents stored, want 1", n)
	}
	tab.checkProblems(t)
}
