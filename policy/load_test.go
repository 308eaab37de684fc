package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sitesync.example/gateway/policy"
)

// rolePrefix starts a policy with one role whose rules follow (at line 5).
const rolePrefix = "roles:\n  r:\n    read: {fields: \"*\"}\n    rules:\n"

func TestParse_Problems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want lists, for each expected problem, "LINE:COL PATH | message fragment"
		// (COL 0: any column).
		want []string
	}{
		{"YAMLSyntax", "roles:\n  r: [a, b\n", []string{"3:1  | did not find expected"}},
		{"Empty", "", []string{"0:0  | empty"}},
		{"NoRoles", "schemas: {}\n", []string{"1:1 roles | defines no roles"}},
		{"UnknownTopKey", "roles: {r: {}}\npolicies: {}\n", []string{`2:1 policies | unknown key "policies"`}},
		{"UnknownRoleKey", "roles:\n  r:\n    reed: {}\n", []string{`3:5 roles.r.reed | unknown key "reed"`}},
		{"DuplicateKey", "roles:\n  r: {}\n  r: {}\n", []string{`3:3 roles.r | duplicate key "r"`}},
		{"UnknownMethod", rolePrefix + "      - {name: a, effect: allow, methods: [get, delete], portal_types: [P]}\n",
			[]string{`5:49 roles.r.rules[0].methods[1] (rule a) | "delete" is not get`}},
		{"AlwaysAllowedMethod", rolePrefix + "      - {effect: allow, methods: [describe], portal_types: [P]}\n",
			[]string{`5:35 roles.r.rules[0].methods[0] | always allowed`}},
		{"CELSyntax", rolePrefix + "      - {name: a, effect: allow, methods: [get], portal_types: [P], when: 'doc.title =='}\n",
			[]string{`5:88 roles.r.rules[0].when (rule a) | Syntax error`}},
		{"CELUndeclared", rolePrefix + "      - name: a\n        effect: allow\n        methods: [get]\n        portal_types: [P]\n        when: 'has(doc.x) && dco.title == \"x\"'\n",
			[]string{`9:30 roles.r.rules[0].when (rule a) | undeclared reference to 'dco'`}},
		{"CELBlockScalar", rolePrefix + "      - name: a\n        effect: allow\n        methods: [get]\n        portal_types: [P]\n        when: |\n          doc.x == 1 &&\n            dco.y\n",
			[]string{`11:13 roles.r.rules[0].when (rule a) | undeclared reference to 'dco'`}},
		{"CELNotBool", rolePrefix + "      - {effect: allow, methods: [get], portal_types: [P], when: '1 + 2'}\n",
			[]string{`5:67 roles.r.rules[0].when | boolean`}},
		{"MissingEffect", rolePrefix + "      - {methods: [get], portal_types: [P]}\n", []string{`5:9 roles.r.rules[0].effect | missing`}},
		{"BadEffect", rolePrefix + "      - {effect: permit, methods: [get], portal_types: [P]}\n", []string{`5:18 roles.r.rules[0].effect | "permit" is not allow or deny`}},
		{"MissingMethodsAndTypes", rolePrefix + "      - {effect: deny}\n", []string{`5:9 roles.r.rules[0].methods | missing`, `5:9 roles.r.rules[0].portal_types | missing`}},
		{"WriteMissing", rolePrefix + "      - {effect: allow, methods: [post], portal_types: [P]}\n", []string{`5:9 roles.r.rules[0].write | missing`}},
		{"WriteWithoutWriteMethod", rolePrefix + "      - {effect: allow, methods: [get], portal_types: [P], write: [a]}\n", []string{`5:67 roles.r.rules[0].write | only rules for post or put`}},
		{"TransitionsMissing", rolePrefix + "      - {effect: allow, methods: [action], portal_types: [P]}\n", []string{`5:9 roles.r.rules[0].transitions | missing`}},
		{"TransitionsWithoutAction", rolePrefix + "      - {effect: deny, methods: [get], portal_types: [P], transitions: [a]}\n", []string{`5:72 roles.r.rules[0].transitions | only rules for action`}},
		{"StarAndNames", rolePrefix + "      - {effect: deny, methods: [get], portal_types: [\"*\", P]}\n", []string{`5:54 roles.r.rules[0].portal_types | not both`}},
		{"DuplicateRuleName", rolePrefix + "      - {name: a, effect: deny, methods: [get], portal_types: [P]}\n      - {name: a, effect: deny, methods: [put], portal_types: [P]}\n",
			[]string{`6:9 roles.r.rules[1].name (rule a) | another rule`}},
		{"BadScope", "roles:\n  r:\n    read: {scope: 'a:(b OR', fields: \"*\"}\n", []string{`3:27 roles.r.read.scope | not a jIO query`}},
		{"BadLimits", "roles:\n  r:\n    limits: {rate: -1, burst: x, max_limit: 1.5}\n",
			[]string{`3:20 roles.r.limits.rate | number`, `3:31 roles.r.limits.burst | whole number`, `3:45 roles.r.limits.max_limit | whole number`}},
		{"ZeroBurst", "roles:\n  r:\n    limits: {rate: 1, burst: 0}\n", []string{`3:13 roles.r.limits.burst | at least 1`}},
		{"SchemaField", "roles: {r: {}}\nschemas:\n  P:\n    fields:\n      a: {type: text}\n      b: {type: string, pattern: '(', max_length: -1}\n      c: {type: boolean, enum: [true]}\n      d: {type: number, max_length: 3}\n      e: {required: true}\n",
			[]string{
				`5:17 schemas.P.fields.a.type | "text" is not`,
				`6:34 schemas.P.fields.b.pattern | not a regular expression`,
				`6:51 schemas.P.fields.b.max_length | whole number`,
				`7:32 schemas.P.fields.c.enum | only string, list, number and integer`,
				`8:37 schemas.P.fields.d.max_length | only string and list`,
				`9:10 schemas.P.fields.e.type | missing`,
			}},
		{"SchemaChecks", "roles: {r: {}}\nschemas:\n  P:\n    checks:\n      - {name: c1, expr: 'doc.x >'}\n      - {expr: 'true', message: m}\n",
			[]string{
				`5:9 schemas.P.checks[0].message (check c1) | missing`,
				`5:34 schemas.P.checks[0].expr (check c1) | Syntax error`,
				`6:9 schemas.P.checks[1].name | missing`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Parse("p.yaml", []byte(tt.src))
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			if len(le.Problems) != len(tt.want) {
				t.Fatalf("problems:\n%v\nwant %d", err, len(tt.want))
			}
			for i, w := range tt.want {
				pos, frag, _ := strings.Cut(w, " | ")
				p := le.Problems[i]
				got := p.String()
				wantPrefix := "p.yaml:" + strings.Replace(pos, " ", ": ", 1)
				if strings.HasPrefix(pos, "0:0") {
					wantPrefix = "p.yaml: "
				}
				if !strings.HasPrefix(got, wantPrefix) || !strings.Contains(got, frag) {
					t.Errorf("problem %d = %q\nwant prefix %q containing %q", i, got, wantPrefix, frag)
				}
			}
		})
	}
}

func TestParse_AllProblemsAtOnce(t *testing.T) {
	src := rolePrefix + `      - {effect: allow, methods: [got], portal_types: [P]}
      - {effect: allow, methods: [get], portal_types: [P], when: 'nope'}
  other:
    reed: {}
schemas:
  P:
    fields: {a: {type: txt}}
`
	_, err := policy.Parse("p.yaml", []byte(src))
	var le *policy.LoadError
	if !errors.As(err, &le) || len(le.Problems) != 4 {
		t.Fatalf("err = %v, want 4 problems", err)
	}
	for i := 1; i < len(le.Problems); i++ {
		if le.Problems[i].Line < le.Problems[i-1].Line {
			t.Fatalf("problems out of line order:\n%v", err)
		}
	}
}

func TestParse_AnchorsAndMerge(t *testing.T) {
	e, err := policy.Parse("p.yaml", []byte(`
roles:
  base: &base
    read: {fields: "*"}
    rules:
      - &getall {name: getall, effect: allow, methods: [get, allDocs], portal_types: ["*"]}
    limits: &limits {rate: 5, max_limit: 10}
  child:
    <<: *base
    limits: {<<: *limits, max_limit: 20}
schemas: {P: {fields: {a: {type: string}}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Limits("child"); got.Rate != 5 || got.MaxLimit != 20 || got.Burst != 5 {
		t.Fatalf("child limits = %+v", got)
	}
	if got := e.Describe("child"); len(got) != 1 || got[0].PortalType != "P" {
		t.Fatalf("child types = %+v", got)
	}
}

// FuzzParse checks that no policy file, however broken, panics the loader, and that a file
// that loads answers describe for each of its roles.
func FuzzParse(f *testing.F) {
	for _, src := range []string{testPolicy, scopePolicy, benchPolicy, rolePrefix + "      - {effect: allow, methods: [get], portal_types: [P], when: 'doc.x'}\n"} {
		f.Add([]byte(src))
	}
	if data, err := os.ReadFile(filepath.Join("..", "policy.example.yaml")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := policy.Parse("f.yaml", data)
		if err != nil {
			var le *policy.LoadError
			if !errors.As(err, &le) || len(le.Problems) == 0 {
				t.Fatalf("err = %v, want a *LoadError with problems", err)
			}
			return
		}
		for _, r := range e.Roles() {
			_ = e.Describe(r)
		}
	})
}
