package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runMain runs the command line in-process and returns its output and exit status.
func runMain(tb testing.TB, argv ...string) (stdout, stderr string, code int) {
	tb.Helper()
	return runDocs(tb, "", argv...)
}

// repoRoot is the repository's root, found before any test changes directory.
var repoRoot = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

// examplePath returns the absolute path of a file at the repository's root.
func examplePath(tb testing.TB, name string) string {
	tb.Helper()
	return filepath.Join(repoRoot, name)
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestPolicyCheck(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./gateway.yaml
	t.Run("OK", func(t *testing.T) {
		out, errOut, code := runMain(t, "policy", "check", examplePath(t, "policy.example.yaml"))
		if code != 0 || !strings.Contains(out, "ok (roles: clerk, storekeeper, supervisor)") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("Problems", func(t *testing.T) {
		bad := writeFile(t, "bad.yaml", `roles:
  clerk:
    read: {scope: 'portal_type:(', fields: "*"}
    rules:
      - {name: edit, effect: allow, methods: [get, delete], portal_types: [P]}
      - name: cond
        effect: allow
        methods: [get]
        portal_types: [P]
        when: 'has(doc.x) && dco.x == 1'
schemas:
  P:
    fields: {a: {type: text}}
`)
		out, errOut, code := runMain(t, "policy", "check", bad)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			bad + `:3:33: roles.clerk.read.scope: not a jIO query`,
			bad + `:5:52: roles.clerk.rules[0].methods[1] (rule edit): "delete" is not get`,
			bad + `:10:30: roles.clerk.rules[1].when (rule cond): undeclared reference to 'dco'`,
			bad + `:13:24: schemas.P.fields.a.type: "text" is not`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "\n"); n != 4 {
			t.Errorf("%d lines, want 4:\n%s", n, out)
		}
		if !strings.Contains(errOut, "4 problem(s)") {
			t.Errorf("stderr = %q", errOut)
		}
	})
	t.Run("Warning", func(t *testing.T) {
		p := writeFile(t, "warn.yaml", `roles:
  r:
    rules:
      - {effect: allow, methods: [get], portal_types: [P]}
`)
		out, _, code := runMain(t, "policy", "check", p)
		if code != 0 || !strings.Contains(out, "warning: "+p+":3:5: roles.r: the role may get") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("ConfiguredPolicy", func(t *testing.T) {
		cfg := writeFile(t, "gateway.yaml", fmt.Sprintf("policy: %s\n", examplePath(t, "policy.example.yaml")))
		out, errOut, code := runMain(t, "--config", cfg, "policy", "check")
		if code != 0 || !strings.Contains(out, "policy.example.yaml: ok") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("ErrNoPolicy", func(t *testing.T) {
		_, errOut, code := runMain(t, "policy", "check")
		if code != 2 || !strings.Contains(errOut, "no policy file") {
			t.Fatalf("exit %d, want 2\n%s", code, errOut)
		}
	})
	t.Run("ErrMissingFile", func(t *testing.T) {
		_, errOut, code := runMain(t, "policy", "check", filepath.Join(t.TempDir(), "nope.yaml"))
		if code != 1 || !strings.Contains(errOut, "no such file") {
			t.Fatalf("exit %d, want 1\n%s", code, errOut)
		}
	})
}

func TestPolicyTest(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Run("Example", func(t *testing.T) {
		tests := examplePath(t, "policy.example.test.yaml")
		out, errOut, code := runMain(t, "policy", "test", "--policy", examplePath(t, "policy.example.yaml"), tests)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		data, err := os.ReadFile(tests)
		if err != nil {
			t.Fatal(err)
		}
		n := len(regexp.MustCompile(`(?m)^- name:`).FindAll(data, -1))
		if got := strings.Count(out, "\nPASS  ") + strings.Count(out[:6], "PASS  "); got != n || n < 30 {
			t.Fatalf("%d PASS lines for %d cases:\n%s", got, n, out)
		}
		if !strings.Contains(out, fmt.Sprintf("PASS: %d/%d\n", n, n)) || strings.Contains(out, "FAIL") {
			t.Fatalf("summary:\n%s", out)
		}
	})
	t.Run("Failures", func(t *testing.T) {
		cases := writeFile(t, "cases.yaml", `
- name: clerk removes
  role: clerk
  method: remove
  old: {portal_type: Person, title: A}
  expect: deny
  reason: denied
- name: wrong expectation
  role: clerk
  method: post
  doc: {portal_type: Person, title: A, default_email_text: nope}
  expect: allow
- name: wrong reason
  role: clerk
  method: post
  doc: {portal_type: Person, title: A, default_email_text: nope}
  expect: deny
  reason: denied
- name: wrong field
  role: clerk
  method: post
  doc: {portal_type: Person, title: A, default_email_text: nope}
  expect: deny
  fields: [title]
`)
		out, errOut, code := runMain(t, "policy", "test", "--policy", examplePath(t, "policy.example.yaml"), cases)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			"PASS  clerk removes\n",
			"FAIL  wrong expectation (" + cases + ":8): expected allow, got deny (invalid: default_email_text must match",
			"FAIL  wrong reason (" + cases + ":13): expected deny (denied), got deny (invalid:",
			"FAIL  wrong field (" + cases + ":19): expected the error to name field title",
			"FAIL: 1/4 passed\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(errOut, "3 of 4 policy test cases failed") {
			t.Errorf("stderr = %q", errOut)
		}
	})
	t.Run("ErrBadCases", func(t *testing.T) {
		cases := writeFile(t, "cases.yaml", `
- {name: a, role: clerk, method: get, expect: maybe}
- {name: b, method: get, expect: allow}
- {name: c, role: clerk, method: get, expect: allow, colour: red}
`)
		_, errOut, code := runMain(t, "policy", "test", "--policy", examplePath(t, "policy.example.yaml"), cases)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, errOut)
		}
		for _, want := range []string{cases + ":2:3: a: expect must be allow or deny", cases + ":3:3: b: missing role", `:4:54: colour: unknown key "colour"`} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("ErrBrokenPolicy", func(t *testing.T) {
		bad := writeFile(t, "bad.yaml", "roles: {r: {rules: [{effect: allow}]}}\n")
		cases := writeFile(t, "cases.yaml", "- {name: a, role: r, method: get, expect: allow}\n")
		_, errOut, code := runMain(t, "policy", "test", "--policy", bad, cases)
		if code != 1 || !strings.Contains(errOut, "problem(s)") || !strings.Contains(errOut, "methods: missing") {
			t.Fatalf("exit %d, want 1\n%s", code, errOut)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		if _, _, code := runMain(t, "policy", "test"); code != 2 {
			t.Fatalf("no FILE: exit %d, want 2", code)
		}
	})
}

func TestPolicyExplain(t *testing.T) {
	t.Chdir(t.TempDir())
	pol := examplePath(t, "policy.example.yaml")
	tests := []struct {
		name string
		argv []string
		code int
		want []string
	}{
		{"Deny/field", []string{"--role", "clerk", "--method", "put", "--old", `{"portal_type":"Person","title":"Ann"}`, "--patch", `{"default_email_text":"a@b","salary":3}`}, 0,
			[]string{"decision: deny (field_not_writable): role clerk may not change salary", "  salary: not writable by role clerk",
				"decided by: deny by default", "allow contacts_write (line ", "matches, but does not let the role write salary"}},
		{"Deny/rule", []string{"--role", "clerk", "--method", "remove", "--old", `{"portal_type":"Person"}`}, 0,
			[]string{"decision: deny (denied): role clerk may not remove Person documents (rule no_remove)", "decided by: no_remove", "deny  no_remove (line "}},
		{"Deny/condition", []string{"--role", "storekeeper", "--method", "put", "--old", `{"portal_type":"Sale Order","destination":"organisation_module/1","simulation_state":"confirmed"}`, "--patch", `{"title":"x"}`}, 0,
			[]string{"decision: deny (condition_failed)", `condition old == null || !has(old.simulation_state) || old.simulation_state == "draft" is false`}},
		{"Deny/schema", []string{"--role", "clerk", "--method", "post", "--doc", `{"portal_type":"Person","default_email_text":"bad"}`}, 0,
			[]string{"decision: deny (invalid)", "  default_email_text: must match", "  title: is required", "decided by: the portal type's schema (rule contacts_write allowed the request)"}},
		{"Allow", []string{"--role", "supervisor", "--method", "action", "--transition", "confirm_action", "--old", `{"portal_type":"Sale Order"}`}, 0,
			[]string{"decision: allow", "decided by: everything", "allow everything (line "}},
		{"AllDocs", []string{"--role", "clerk", "--method", "allDocs", "--query", "ann"}, 0,
			[]string{"decision: allow", `title:  "%ann%"`, "limit: at most 500 rows"}},
		{"AllDocs/refused", []string{"--role", "clerk", "--method", "allDocs", "--query", "base_price:1"}, 0,
			[]string{"decision: deny (field_not_readable): role clerk may not filter on base_price"}},
		{"ErrNoRole", []string{"--method", "get"}, 2, nil},
		{"ErrUnknownRole", []string{"--role", "visitor", "--method", "get", "--doc", `{"portal_type":"Person"}`}, 2, nil},
		{"ErrBadJSON", []string{"--role", "clerk", "--method", "get", "--doc", `{"portal_type":`}, 2, nil},
		{"ErrNotObject", []string{"--role", "clerk", "--method", "get", "--doc", `[1]`}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := append([]string{"policy", "explain", "--policy", pol}, tt.argv...)
			out, errOut, code := runMain(t, argv...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
