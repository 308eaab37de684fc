package main

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// runQuery runs the gateway in process with stdin and returns stdout, stderr and the exit code.
func runQuery(tb testing.TB, stdin string, argv ...string) (string, string, int) {
	tb.Helper()
	return runDocs(tb, stdin, argv...)
}

func TestQueryCommand_Parse(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		want string // a JSON value
	}{
		{name: "Simple", argv: []string{"a:=b"}, want: `{"type":"simple","key":"a","value":"b","operator":"="}`},
		{name: "Precedence", argv: []string{"a:b OR c:d e:f"}, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"complex","operator":"AND","query_list":[{"type":"simple","key":"c","value":"d"},{"type":"simple","key":"e","value":"f"}]}]}`},
		{name: "ArgumentsJoined", argv: []string{"a:(b", "OR", "c)"}, want: `{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b"},{"type":"simple","key":"a","value":"c"}]}`},
		{name: "Empty", argv: []string{""}, want: `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runQuery(t, "", append([]string{"query", "parse"}, tt.argv...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
				t.Fatalf("output %q is not one line", out)
			}
			var got, want any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %s, want %s", out, tt.want)
			}
		})
	}
}

func TestQueryCommand_Format(t *testing.T) {
	tests := []struct {
		name  string
		argv  []string
		stdin string
		want  string
	}{
		{name: "Argument", argv: []string{`{"type":"complex","operator":"OR","query_list":[{"type":"simple","key":"a","value":"b","operator":"="},{"type":"simple","key":"d","value":"2","operator":"<"}]}`}, want: `( a: = "b" OR d: < "2" )` + "\n"},
		{name: "Stdin", stdin: `{"type":"complex","query_list":[{"type":"simple","key":"","value":"a"},{"type":"simple","key":"","value":"b"}]}`, want: `(  "a"   "b" )` + "\n"},
		{name: "QueryString", argv: []string{`"(a:b OR a:c)"`}, want: `a: (  "b" OR  "c" )` + "\n"},
		{name: "Null", stdin: "null\n", want: "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runQuery(t, tt.stdin, append([]string{"query", "format"}, tt.argv...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if out != tt.want {
				t.Fatalf("got %q, want %q", out, tt.want)
			}
		})
	}
}

func TestQueryCommand_Errors(t *testing.T) {
	tests := []struct {
		name  string
		argv  []string
		stdin string
		code  int
		msg   string
	}{
		{name: "ParseError", argv: []string{"query", "parse", "a:(b OR c))"}, code: 1, msg: `unexpected ")" at column 11`},
		{name: "DanglingAnd", argv: []string{"query", "parse", "a AND"}, code: 1, msg: "unexpected end of query at column 6"},
		{name: "ParseMissingArgument", argv: []string{"query", "parse"}, code: 2, msg: "requires at least 1 arg"},
		{name: "FormatTooManyArguments", argv: []string{"query", "format", "{}", "{}"}, code: 2, msg: "accepts at most 1 arg"},
		{name: "FormatBadTree", argv: []string{"query", "format", `{"type":"simple"}`}, code: 1, msg: `missing "value"`},
		{name: "FormatEmptyStdin", argv: []string{"query", "format"}, code: 1, msg: "empty query tree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runQuery(t, tt.stdin, tt.argv...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errs)
			}
			if !strings.Contains(errs, tt.msg) {
				t.Fatalf("stderr %q does not mention %q", errs, tt.msg)
			}
			if out != "" {
				t.Fatalf("stdout %q, want nothing", out)
			}
		})
	}
}

// TestQueryCommand_IgnoresConfig checks the query tools run even with a broken gateway.yaml
// in the working directory: they need no configuration.
func TestQueryCommand_IgnoresConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile(DefaultConfigPath, []byte("{not yaml: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runQuery(t, "", "query", "parse", "a:b")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"key":"a"`) {
		t.Fatalf("output %q", out)
	}
}
