package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/sqlite"
)

func init() {
	docsSubcommands = append(docsSubcommands, newDocsPutCommand, newDocsPostCommand, newDocsRmCommand)
}

// docsWriteFlags are the options every operator write takes.
type docsWriteFlags struct {
	key    string
	asRole string
}

func (f *docsWriteFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.key, "key", "", "write key `K`: repeating a write with the same key answers the first result instead of writing twice")
	cmd.Flags().StringVar(&f.asRole, "as-role", "", "apply the policy's rules and schemas of `ROLE` to this write (default: none, as the operator)")
}

// authorize returns the policy check an operator write runs inside its transaction: nil
// without --as-role, else the role's rules and schemas, exactly as for a browser of it.
func (m *Main) authorize(f docsWriteFlags, method string, w *sqlite.Write) error {
	if f.asRole == "" {
		return nil
	}
	e, err := m.loadPolicy(m.Config.Policy)
	if err != nil {
		return err
	}
	if !e.HasRole(f.asRole) {
		return usagef("--as-role %q: the policy has no such role (roles: %s)", f.asRole, strings.Join(e.Roles(), ", "))
	}
	w.Authorize = func(old, doc, patch map[string]any) error {
		return e.AuthorizeWrite(policy.WriteInput{
			Peer: sqlite.OperatorPeer, Role: f.asRole, Method: method, ID: w.ID,
			Transition: w.Transition, Patch: patch, Doc: doc, Old: old,
		})
	}
	return nil
}

// readDocArg returns the JSON object given as an argument, or read from stdin for "-".
func (m *Main) readDocArg(arg string) (json.RawMessage, error) {
	if arg != "-" {
		return json.RawMessage(arg), nil
	}
	b, err := io.ReadAll(m.Stdin)
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	return json.RawMessage(b), nil
}

// docsWrite applies one operator write (roles and schemas are not applied) through the same
// path as a browser's: replica, outbox entry and write key in one transaction, committed
// durably before the answer {"id": …} is printed.
func (m *Main) docsWrite(ctx context.Context, w sqlite.Write) error {
	db, err := m.openWriteDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	w.Peer = sqlite.OperatorPeer
	res, err := db.Write(ctx, w)
	if err != nil {
		return err
	}
	if !res.Replayed {
		m.wakeServe(ctx)
	}
	b, _ := json.Marshal(map[string]string{"id": res.ID})
	_, err = fmt.Fprintf(m.Stdout, "%s\n", b)
	return err
}

func newDocsPutCommand(m *Main) *cobra.Command {
	var f docsWriteFlags
	cmd := &cobra.Command{
		Use:   "put ID JSON|-",
		Short: "Change a document (a JSON merge patch) and queue the change for ERP5",
		Long: `Apply JSON (or stdin for -) to the live document ID as a merge patch: fields not given
are unchanged, null clears one; portal_type cannot change. The change and its outbox entry
are stored in one transaction, durably, before {"id": ID} is printed. A local id the gateway
handed out still finds the document under the ERP5 id it became. An id the replica lacks
fails (ERP5 cannot create a document under a chosen id: use post).`,
		Example: `  gateway docs put person_module/20 '{"email": "anne@example.org", "fax": null}'
  gateway docs put person_module/20 - --key fix-2024-05-02 < patch.json`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			body, err := m.readDocArg(a[1])
			if err != nil {
				return err
			}
			w := sqlite.Write{Op: sqlite.OpPut, ID: a[0], Body: body, Key: f.key}
			if err := m.authorize(f, sqlite.OpPut, &w); err != nil {
				return err
			}
			return m.docsWrite(cmd.Context(), w)
		},
	}
	f.register(cmd)
	return cmd
}

func newDocsPostCommand(m *Main) *cobra.Command {
	var f docsWriteFlags
	cmd := &cobra.Command{
		Use:   "post JSON|-",
		Short: "Create a document under a local id and queue it for ERP5",
		Long: `Store JSON (or stdin for -) as a new document and print {"id": ID}. The document needs
a portal_type. Its id is local (MODULE/local-ULID) until ERP5 numbers it: MODULE is
upstream.modules[portal_type] (by default ERP5's convention), or the document's
parent_relative_url for a child (a Sale Order Line inside its Sale Order). The local id keeps
working after ERP5 has numbered the document.`,
		Example: `  gateway docs post '{"portal_type": "Person", "title": "Anne Martin"}'
  gateway docs post - --key import-42 < person.json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			body, err := m.readDocArg(a[0])
			if err != nil {
				return err
			}
			w := sqlite.Write{Op: sqlite.OpPost, Body: body, Key: f.key}
			if err := m.authorize(f, sqlite.OpPost, &w); err != nil {
				return err
			}
			return m.docsWrite(cmd.Context(), w)
		},
	}
	f.register(cmd)
	return cmd
}

func newDocsRmCommand(m *Main) *cobra.Command {
	var f docsWriteFlags
	cmd := &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a document and queue the removal for ERP5",
		Long: `Remove the live document ID: reads no longer return it, and the removal waits in the
outbox for ERP5 (a document created here and never sent is simply cancelled). Until ERP5
confirms, ` + "`gateway outbox drop`" + ` of a held or dead removal restores it.`,
		Example: `  gateway docs rm person_module/20`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			w := sqlite.Write{Op: sqlite.OpRemove, ID: a[0], Key: f.key}
			if err := m.authorize(f, sqlite.OpRemove, &w); err != nil {
				return err
			}
			return m.docsWrite(cmd.Context(), w)
		},
	}
	f.register(cmd)
	return cmd
}
