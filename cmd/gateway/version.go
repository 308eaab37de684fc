package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/sqlite"
)

func init() { register(newVersionCommand) }

func newVersionCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the gateway's version, Go version and database schema version",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(m.Stdout, "gateway %s (%s, schema %d)\n", Version, runtime.Version(), sqlite.SchemaVersion())
			return nil
		},
	}
}
