package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/query"
)

func init() { register(newQueryCommand) }

// newQueryCommand builds `gateway query`, tools for the jIO query language (docs/DESIGN.md appendix D).
// They read no configuration and open no database.
func newQueryCommand(m *Main) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Parse and format jIO query strings",
		// The query tools are pure: skip the root's configuration loading, so a broken
		// gateway.yaml does not stop them.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(newQueryParseCommand(m), newQueryFormatCommand(m))
	return cmd
}

func newQueryParseCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "parse QUERY...",
		Short: "Print the jIO JSON tree of a query string",
		Long: `Print the jIO JSON tree of a query string, compact on one line. Several arguments
are joined with spaces, so the query need not be quoted as one argument. The empty query
prints null (it matches every document). A query that does not parse exits 1 with the column
of the problem.`,
		Example: `  gateway query parse 'portal_type:"Sale Order" AND title:%cement%'`,
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(_ *cobra.Command, a []string) error {
			q, err := query.Parse(strings.Join(a, " "))
			if err != nil {
				return fmt.Errorf("parse query: %w", err)
			}
			b, err := query.MarshalJSON(q)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(m.Stdout, "%s\n", b)
			return err
		},
	}
}

func newQueryFormatCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "format [TREE]",
		Short: "Print jIO's query string for a JSON tree",
		Long: `Print jIO's serialisation of a query tree given as JSON, from the argument or else
from standard input. A JSON string is parsed as a query string first, so format also
normalises query strings; null prints an empty line.`,
		Example: `  gateway query format '{"type":"simple","key":"a","value":"b","operator":"="}'
  echo '"a:(b OR c)"' | gateway query format`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(_ *cobra.Command, a []string) error {
			var data []byte
			if len(a) == 1 {
				data = []byte(a[0])
			} else {
				var err error
				if data, err = io.ReadAll(m.Stdin); err != nil {
					return fmt.Errorf("read tree: %w", err)
				}
			}
			q, err := query.ParseJSON(data)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(m.Stdout, query.Format(q))
			return err
		},
	}
}
