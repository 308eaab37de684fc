package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The sale-order story in Debian's firefox-esr: node runs testdata/story/firefox.mjs, which
// drives Firefox over WebDriver BiDi with puppeteer-core (installed by `npm ci` from the
// committed package-lock.json, as .ci/run does) and runs the same in-page steps as the
// Chromium story. The double is checked here once the browser is done; the steps that need
// the head office mid-story (wait for ERP5's confirmation, relabel a field) call back over
// a small HTTP control server on loopback.

// firefoxTools finds node, firefox-esr and puppeteer-core; a missing one fails the test (the
// browsers are what site users run) unless GATEWAY_SKIP_BROWSER=1.
func firefoxTools(tb testing.TB) (node, firefox string) {
	tb.Helper()
	if os.Getenv("GATEWAY_SKIP_BROWSER") == "1" {
		tb.Skip("GATEWAY_SKIP_BROWSER=1: browser tests skipped")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Fatal("node is not installed: install Debian's nodejs (as .ci/run does) or set GATEWAY_SKIP_BROWSER=1")
	}
	for _, p := range []string{"/usr/bin/firefox-esr", "/usr/bin/firefox"} {
		if _, err := os.Stat(p); err == nil {
			firefox = p
			break
		}
	}
	if firefox == "" {
		tb.Fatal("firefox-esr is not installed: install Debian's firefox-esr (apt-get install firefox-esr, as .ci/run does) or set GATEWAY_SKIP_BROWSER=1")
	}
	if _, err := os.Stat(filepath.Join("..", "..", "node_modules", "puppeteer-core", "package.json")); err != nil {
		tb.Fatal("puppeteer-core is not installed: run `npm ci` at the repository's root (as .ci/run does) or set GATEWAY_SKIP_BROWSER=1")
	}
	return node, firefox
}

// storyControl serves the Firefox story's calls to the head office.
func storyControl(tb testing.TB, d *Demo) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /confirmed", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Title string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			for _, doc := range d.Sim.Documents() {
				if doc.PortalType == "Sale Order" && doc.Properties["title"] == req.Title && doc.Properties["simulation_state"] == "confirmed" {
					if dl := d.Server.Downlink; dl != nil {
						dl.SyncNow()
					}
					json.NewEncoder(w).Encode(map[string]string{"id": doc.ID})
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		http.Error(w, "the order was not confirmed at ERP5 within 60 s", http.StatusGatewayTimeout)
	})
	mux.HandleFunc("POST /relabel", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Field, Title string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := relabelAtERP5(d, "Sale Order", req.Field, req.Title); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]bool{"ok": true})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// storyResult is what firefox.mjs saw.
type storyResult struct {
	Problems []string `json:"problems"`
	Shots    []string `json:"shots"`
	Error    string   `json:"error"`
	Page     string   `json:"page"`
	Form     struct {
		Labels []string `json:"labels"`
		Groups []string `json:"groups"`
	} `json:"form"`
	CustomerTitle string `json:"customerTitle"`
	Date          struct {
		Field string `json:"field"`
		Type  string `json:"type"`
	} `json:"date"`
	Lines struct {
		Head  []string   `json:"head"`
		Rows  [][]string `json:"rows"`
		Total string     `json:"total"`
	} `json:"lines"`
	Draft        storyWorkflow `json:"draft"`
	AfterConfirm storyWorkflow `json:"afterConfirm"`
	Confirmed    storyWorkflow `json:"confirmed"`
	Relabelled   string        `json:"relabelled"`
}

// TestStory_Firefox is the sale-order story in Debian's firefox-esr, with the receiver at
// head office and against stock ERP5.
func TestStory_Firefox(t *testing.T) {
	node, firefox := firefoxTools(t)
	shots := storyShots(t)
	for _, mode := range []struct {
		name  string
		stock bool
	}{{"receiver", false}, {"stock", true}} {
		t.Run(mode.name, func(t *testing.T) {
			d := startStoryDemo(t, mode.stock)
			plan := planStory(t, d.Sim, mode.stock)
			dir := shots
			if mode.stock {
				dir = t.TempDir() // the receiver's screenshots tell the story
			}
			cfg, _ := json.Marshal(map[string]any{
				"firefox": firefox, "invite": d.Invite, "steps": filepath.Join("testdata", "story", "steps.js"),
				"shots": dir, "profile": t.TempDir(), "plan": plan, "control": storyControl(t, d),
			})
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "story", "firefox.mjs"))
			cmd.Env = append(os.Environ(), "STORY_CONFIG="+string(cfg), "MOZ_HEADLESS=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("node firefox.mjs: %v\n%s\n%s", err, stdout.String(), stderr.String())
			}
			var res storyResult
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("firefox.mjs output: %v\n%s\n%s", err, stdout.String(), stderr.String())
			}
			if res.Error != "" {
				t.Fatalf("firefox story: %s\npage: %s", res.Error, res.Page)
			}
			for _, p := range res.Problems {
				t.Errorf("firefox: %s", p)
			}
			if strings.Join(res.Form.Groups, ",") != "left,right,center,bottom" {
				t.Errorf("create form groups = %v", res.Form.Groups)
			}
			if want, _ := d.Sim.Document(plan.CustomerID).Properties["title"].(string); res.CustomerTitle != want {
				t.Errorf("customer shown as %q, want %q", res.CustomerTitle, want)
			}
			if res.Date.Type != "date" {
				t.Errorf("date control = %+v, want a date control", res.Date)
			}
			if len(res.Lines.Rows) != 3 || !strings.HasPrefix(res.Lines.Total, "Total") {
				t.Errorf("lines = %+v", res.Lines)
			}
			if mode.stock {
				if !strings.Contains(strings.Join(res.Draft.Notes, " "), "receiver") {
					t.Errorf("stock mode: no word that workflow actions need the receiver: %+v", res.Draft)
				}
			} else {
				if want := wantTransitions(t, d.Sim, "Sale Order", "draft"); !slices.Equal(res.Draft.Buttons, want) {
					t.Errorf("draft order offers %v, want ERP5's %v", res.Draft.Buttons, want)
				}
				if want := wantTransitions(t, d.Sim, "Sale Order", "confirmed"); !slices.Equal(res.Confirmed.Buttons, want) || res.Confirmed.State != "Confirmed" {
					t.Errorf("confirmed order shows %+v, want state Confirmed offering %v", res.Confirmed, want)
				}
				if !strings.HasPrefix(res.Relabelled, plan.Relabel.Title) {
					t.Errorf("relabelled field shows %q, want %q", res.Relabelled, plan.Relabel.Title)
				}
			}
			checkOrderAtERP5(t, d, plan, res.Date.Field)
		})
	}
}
