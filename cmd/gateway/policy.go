package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v4"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/query"
)

func init() { register(newPolicyCommand) }

// newPolicyCommand builds `gateway policy`: check, test and explain the policy file.
func newPolicyCommand(m *Main) *cobra.Command {
	var configErr error
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, test and explain the policy file (roles, rules, schemas)",
		// A policy named on the command line needs no configuration: a broken gateway.yaml
		// only matters when the configured policy is wanted.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			configErr = m.LoadConfig(cmd)
			if m.Logger == nil {
				m.Logger = newLogger(m.Stderr, LogConfig{Level: "info", Format: "text"})
			}
			return nil
		},
	}
	// policyPath returns the file to use: the argument or flag, else the configuration's.
	policyPath := func(given string) (string, error) {
		if given != "" {
			return given, nil
		}
		if configErr != nil {
			return "", configErr
		}
		if m.Config.Policy == "" {
			return "", usagef("no policy file: name one, or set policy in the configuration")
		}
		return m.Config.Policy, nil
	}
	cmd.AddCommand(newPolicyCheckCommand(m, policyPath), newPolicyTestCommand(m, policyPath), newPolicyExplainCommand(m, policyPath))
	return cmd
}

// loadPolicy loads the policy at path with the command's logger; "" is the embedded example
// policy.
func (m *Main) loadPolicy(path string) (*policy.Engine, error) {
	var e *policy.Engine
	var err error
	if path == "" {
		e, err = policy.Parse("policy.example.yaml (embedded)", gateway.ExamplePolicy)
	} else {
		e, err = policy.Load(path)
	}
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%s: the policy has %d problem(s); run 'gateway policy check %s':\n%w", path, len(le.Problems), path, err)
		}
		return nil, err
	}
	e.Logger = m.Logger.With(policy.LogKeySubsystem, "policy")
	e.DateKeys = m.Config.Query.DateKeys
	return e, nil
}

func newPolicyCheckCommand(m *Main, policyPath func(string) (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "Report every problem in a policy file",
		Long: `Load a policy file (default: the configuration's policy) and report every problem in
it, one a line, as FILE:LINE:COLUMN: PATH (rule NAME): MESSAGE — YAML structure, unknown
keys, methods, CEL conditions and checks (with the column inside the expression), jIO read
scopes, schema fields. Warnings (allowed but probably not meant) are printed too but do not
fail the check. Exits 1 when there is any problem.`,
		Example: `  gateway policy check policy.yaml`,
		Args:    args(cobra.MaximumNArgs(1)),
		RunE: func(_ *cobra.Command, a []string) error {
			var given string
			if len(a) == 1 {
				given = a[0]
			}
			path, err := policyPath(given)
			if err != nil {
				return err
			}
			e, err := policy.Load(path)
			var le *policy.LoadError
			if errors.As(err, &le) {
				for _, p := range le.Problems {
					fmt.Fprintln(m.Stdout, p)
				}
				return fmt.Errorf("%s: %d problem(s)", path, len(le.Problems))
			}
			if err != nil {
				return err
			}
			for _, w := range e.Warnings() {
				fmt.Fprintf(m.Stdout, "warning: %s\n", w)
			}
			_, err = fmt.Fprintf(m.Stdout, "%s: ok (roles: %s)\n", path, strings.Join(e.Roles(), ", "))
			return err
		},
	}
}

// policyCase is one case of a `policy test` file.
type policyCase struct {
	Name       string
	Line       int
	Role       string
	Peer       string
	Method     string
	ID         string
	Transition string
	Doc        map[string]any
	Old        map[string]any
	Patch      map[string]any
	Parent     map[string]any
	Query      *string
	SortOn     []string
	Expect     string
	Reason     string
	Fields     []string
}

func newPolicyTestCommand(m *Main, policyPath func(string) (string, error)) *cobra.Command {
	var policyFile string
	cmd := &cobra.Command{
		Use:   "test FILE",
		Short: "Run a file of policy test cases",
		Long: `Run the cases of FILE, a YAML list, against the policy (--policy, default the
configuration's) and print PASS or FAIL for each, then a summary. Exits 1 when a case fails.

A case:
  name:        what it shows
  role:        the peer's role
  peer:        the peer's name (default "test")
  method:      get, allDocs, post, put, remove or action
  doc:         the document after the change (get: the stored one); a mapping
  old:         the stored document (put, remove, action)
  patch:       put's merge patch (default: doc's differences from old); with old and no doc,
               doc is old with the patch applied
  id:          the document id (request.id in conditions)
  transition:  the workflow transition of an action
  parent:      post: the stored document its parent_relative_url names (the policy's
               containers decide whether it may hold the new one)
  query:       allDocs: a jIO query, checked and scoped as a peer's would be
  sort_on:     allDocs: fields to sort on
  expect:      allow or deny
  reason:      with deny, the reason word (denied, field_not_writable, invalid, ...)
  fields:      with deny, fields the error must name (schema or writability)`,
		Example: `  gateway policy test --policy policy.example.yaml policy.example.test.yaml`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, a []string) error {
			path, err := policyPath(policyFile)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(a[0])
			if err != nil {
				return fmt.Errorf("read tests: %w", err)
			}
			cases, err := parsePolicyCases(a[0], data)
			if err != nil {
				return err
			}
			e, err := m.loadPolicy(path)
			if err != nil {
				return err
			}
			failed := 0
			for _, c := range cases {
				if detail := runPolicyCase(e, c); detail != "" {
					failed++
					fmt.Fprintf(m.Stdout, "FAIL  %s (%s:%d): %s\n", c.Name, a[0], c.Line, detail)
				} else {
					fmt.Fprintf(m.Stdout, "PASS  %s\n", c.Name)
				}
			}
			fmt.Fprintln(m.Stdout, strings.Repeat("-", 60))
			if failed > 0 {
				fmt.Fprintf(m.Stdout, "FAIL: %d/%d passed\n", len(cases)-failed, len(cases))
				return fmt.Errorf("%d of %d policy test cases failed", failed, len(cases))
			}
			_, err = fmt.Fprintf(m.Stdout, "PASS: %d/%d\n", len(cases), len(cases))
			return err
		},
	}
	cmd.Flags().StringVar(&policyFile, "policy", "", "policy file (default: the configuration's policy)")
	return cmd
}

// parsePolicyCases reads a test file: a YAML list of cases.
func parsePolicyCases(name string, data []byte) ([]policyCase, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: must be a YAML list of test cases", name)
	}
	var cases []policyCase
	var problems []string
	bad := func(n *yaml.Node, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d:%d: %s", name, n.Line, n.Column, fmt.Sprintf(format, args...)))
	}
	for i, n := range root.Content[0].Content {
		c := policyCase{Line: n.Line, Name: fmt.Sprintf("case %d", i+1)}
		if n.Kind != yaml.MappingNode {
			bad(n, "a test case must be a mapping")
			continue
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			var err error
			switch k.Value {
			case "name":
				err = v.Decode(&c.Name)
			case "role":
				err = v.Decode(&c.Role)
			case "peer":
				err = v.Decode(&c.Peer)
			case "method":
				err = v.Decode(&c.Method)
			case "id":
				err = v.Decode(&c.ID)
			case "transition":
				err = v.Decode(&c.Transition)
			case "query":
				var s string
				err = v.Decode(&s)
				c.Query = &s
			case "sort_on":
				err = v.Decode(&c.SortOn)
			case "expect":
				err = v.Decode(&c.Expect)
			case "reason":
				err = v.Decode(&c.Reason)
			case "fields":
				err = v.Decode(&c.Fields)
			case "doc", "old", "patch", "parent":
				var obj map[string]any
				obj, err = yamlObject(v)
				switch k.Value {
				case "doc":
					c.Doc = obj
				case "old":
					c.Old = obj
				case "parent":
					c.Parent = obj
				default:
					c.Patch = obj
				}
			default:
				bad(k, "%s: unknown key %q", k.Value, k.Value)
			}
			if err != nil {
				bad(v, "%s: %v", k.Value, err)
			}
		}
		switch {
		case c.Role == "":
			bad(n, "%s: missing role", c.Name)
		case c.Method == "":
			bad(n, "%s: missing method", c.Name)
		case c.Expect != "allow" && c.Expect != "deny":
			bad(n, "%s: expect must be allow or deny", c.Name)
		case c.Expect == "allow" && (c.Reason != "" || len(c.Fields) > 0):
			bad(n, "%s: reason and fields go with expect: deny", c.Name)
		}
		cases = append(cases, c)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return cases, nil
}

// yamlObject converts a YAML mapping to a JSON object as json.Decoder.UseNumber would
// decode it: numbers become json.Number, timestamps stay the strings they were written as.
func yamlObject(n *yaml.Node) (map[string]any, error) {
	v, err := yamlJSON(n)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("must be a mapping")
	}
	return obj, nil
}

// yamlJSON converts a YAML node to a JSON value.
func yamlJSON(n *yaml.Node) (any, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := yamlJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlJSON(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			err := n.Decode(&b)
			return b, err
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				return nil, err
			}
			if json.Valid([]byte(n.Value)) {
				return json.Number(n.Value), nil
			}
			b, _ := json.Marshal(f)
			return json.Number(b), nil
		}
		return n.Value, nil
	}
	return nil, fmt.Errorf("unsupported YAML node at line %d", n.Line)
}

// mergePatch applies an RFC 7396 merge patch to a copy of doc.
func mergePatch(doc, patch map[string]any) map[string]any {
	out := make(map[string]any, len(doc)+len(patch))
	for k, v := range doc {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = mergePatch(dm, pm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// policyInput builds the request a case or an explain command describes.
func policyInput(peer, role, method, id, transition string, doc, old, patch map[string]any) policy.WriteInput {
	if peer == "" {
		peer = "test"
	}
	if method == gateway.MethodPut && doc == nil && old != nil {
		doc = mergePatch(old, patch)
	}
	return policy.WriteInput{Peer: peer, Role: role, Method: method, ID: id, Transition: transition,
		Doc: doc, Old: old, Patch: patch}
}

// runPolicyCase runs one case; it returns "" when it passes, else what went wrong.
func runPolicyCase(e *policy.Engine, c policyCase) string {
	var err error
	if c.Method == gateway.MethodAllDocs && c.Query != nil {
		q, perr := query.Parse(*c.Query)
		if perr != nil {
			return fmt.Sprintf("query: %v", perr)
		}
		opts := query.Options{}
		for _, k := range c.SortOn {
			opts.SortOn = append(opts.SortOn, query.SortKey{Key: k})
		}
		_, _, err = e.ScopeQuery(orDefault(c.Peer, "test"), c.Role, q, opts)
	} else {
		in := policyInput(c.Peer, c.Role, c.Method, c.ID, c.Transition, c.Doc, c.Old, c.Patch)
		err = e.Explain(in).Err
		if err == nil && c.Parent != nil && c.Method == gateway.MethodPost {
			parentID, _ := c.Doc["parent_relative_url"].(string)
			pt, _ := c.Doc["portal_type"].(string)
			err = e.CheckContainer(in.Peer, c.Role, parentID, pt, c.Parent)
		}
	}
	got := "allow"
	if err != nil {
		got = fmt.Sprintf("deny (%s: %s)", gateway.ErrorReason(err), gateway.ErrorMessage(err))
	}
	switch {
	case c.Expect == "allow" && err != nil:
		return "expected allow, got " + got
	case c.Expect == "deny" && err == nil:
		return "expected deny, got allow"
	case c.Expect == "deny" && c.Reason != "" && gateway.ErrorReason(err) != c.Reason:
		return fmt.Sprintf("expected deny (%s), got %s", c.Reason, got)
	}
	if len(c.Fields) > 0 {
		var ge *gateway.Error
		errors.As(err, &ge)
		for _, f := range c.Fields {
			if ge == nil || ge.Fields[f] == "" {
				return fmt.Sprintf("expected the error to name field %s, got %s", f, got)
			}
		}
	}
	return ""
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newPolicyExplainCommand(m *Main, policyPath func(string) (string, error)) *cobra.Command {
	var (
		policyFile, role, method, peer, id, transition string
		docJSON, oldJSON, patchJSON, queryText         string
	)
	cmd := &cobra.Command{
		Use:   "explain --role ROLE --method METHOD [--doc JSON] [--old JSON] [--patch JSON]",
		Short: "Show which rule decides a request, and why",
		Long: `Decide one request against the policy (--policy, default the configuration's) and print
the decision, the rule that made it, and what every rule of the role did. Documents are JSON
objects. For put, --patch is the merge patch (default: --doc's differences from --old) and,
without --doc, the document is --old with --patch applied. For allDocs, --query shows the
query as the role's scope rewrites it. Exits 0 whatever the decision.`,
		Example: `  gateway policy explain --role clerk --method put \
      --old '{"portal_type":"Person","title":"Ann"}' --patch '{"email":"ann@example.org"}'`,
		Args: args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			if role == "" || method == "" {
				return usagef("--role and --method are required")
			}
			var docs [3]map[string]any
			for i, f := range []struct{ flag, text string }{{"--doc", docJSON}, {"--old", oldJSON}, {"--patch", patchJSON}} {
				if f.text == "" {
					continue
				}
				obj, err := decodeObject(f.text)
				if err != nil {
					return usagef("%s: %v", f.flag, err)
				}
				docs[i] = obj
			}
			path, err := policyPath(policyFile)
			if err != nil {
				return err
			}
			e, err := m.loadPolicy(path)
			if err != nil {
				return err
			}
			if !e.HasRole(role) {
				return usagef("role %q is not in %s (roles: %s)", role, path, strings.Join(e.Roles(), ", "))
			}
			w := m.Stdout
			if method == gateway.MethodAllDocs && queryText != "" {
				q, err := query.Parse(queryText)
				if err != nil {
					return usagef("--query: %v", err)
				}
				scoped, opts, err := e.ScopeQuery(orDefault(peer, "test"), role, q, query.Options{DateKeys: m.Config.Query.DateKeys})
				if err != nil {
					fmt.Fprintf(w, "decision: deny (%s): %s\n", gateway.ErrorReason(err), gateway.ErrorMessage(err))
					return nil
				}
				fmt.Fprintf(w, "decision: allow\nquery as scoped: %s\n", query.Format(scoped))
				if opts.Count > 0 {
					fmt.Fprintf(w, "limit: at most %d rows\n", opts.Count)
				}
				return nil
			}
			x := e.Explain(policyInput(peer, role, method, id, transition, docs[0], docs[1], docs[2]))
			if x.Err == nil {
				fmt.Fprintln(w, "decision: allow")
			} else {
				fmt.Fprintf(w, "decision: deny (%s): %s\n", gateway.ErrorReason(x.Err), gateway.ErrorMessage(x.Err))
				var ge *gateway.Error
				if errors.As(x.Err, &ge) {
					for _, f := range slices.Sorted(maps.Keys(ge.Fields)) {
						fmt.Fprintf(w, "  %s: %s\n", f, ge.Fields[f])
					}
				}
			}
			switch {
			case x.DecidedBy != "" && gateway.ErrorCode(x.Err) == gateway.EINVALID:
				fmt.Fprintf(w, "decided by: the portal type's schema (rule %s allowed the request)\n", x.DecidedBy)
			case x.DecidedBy != "":
				fmt.Fprintf(w, "decided by: %s\n", x.DecidedBy)
			case x.Err != nil && gateway.ErrorCode(x.Err) == gateway.EINVALID:
				fmt.Fprintln(w, "decided by: the request or the portal type's schema")
			default:
				fmt.Fprintln(w, "decided by: deny by default (no allow rule granted the request)")
			}
			if len(x.Steps) > 0 {
				fmt.Fprintln(w, "rules:")
				for _, s := range x.Steps {
					fmt.Fprintf(w, "  %s\n", s)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyFile, "policy", "", "policy file (default: the configuration's policy)")
	f.StringVar(&role, "role", "", "the peer's role (required)")
	f.StringVar(&method, "method", "", "get, allDocs, post, put, remove or action (required)")
	f.StringVar(&peer, "peer", "", `the peer's name (default "test")`)
	f.StringVar(&id, "id", "", "the document id")
	f.StringVar(&transition, "transition", "", "the workflow transition of an action")
	f.StringVar(&docJSON, "doc", "", "the document after the change (get, remove, action: the stored one), JSON")
	f.StringVar(&oldJSON, "old", "", "the stored document, JSON")
	f.StringVar(&patchJSON, "patch", "", "put's merge patch, JSON")
	f.StringVar(&queryText, "query", "", "allDocs: a jIO query to scope")
	return cmd
}

// decodeObject decodes a JSON object with numbers as json.Number.
func decodeObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JSON object: trailing data")
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}
