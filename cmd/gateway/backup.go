package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"sitesync.example/gateway/control"
	"sitesync.example/gateway/sqlite"
)

func init() {
	register(newBackupCommand)
	register(newRestoreCommand)
	register(newPromoteCommand)
}

// errServeRunning refuses a command that must not run beside serve.
var errServeRunning = errors.New("serve is running on this data directory; stop it first")

// lockDataDir takes the data directory's lock that serve holds (so that a command that must
// not run beside serve fails while one runs, and no serve starts while it works), then checks
// the control socket too.
func (m *Main) lockDataDir(ctx context.Context) (*sqlite.DirLock, error) {
	lock, err := sqlite.LockDirWithin(m.Config.DataDir, lockWait)
	if err != nil {
		var held *sqlite.HeldError
		if errors.As(err, &held) {
			return nil, fmt.Errorf("%w: %w", err, errServeRunning)
		}
		return nil, err
	}
	if err := m.refuseWhileServing(ctx); err != nil {
		lock.Release()
		return nil, err
	}
	return lock, nil
}

// refuseWhileServing fails when a serve answers on the control socket.
func (m *Main) refuseWhileServing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	running, err := control.NewClient(m.SocketPath()).Running(ctx)
	if err != nil {
		return fmt.Errorf("control socket %s: %w (is serve hung? stop it first)", m.SocketPath(), err)
	}
	if running {
		return errServeRunning
	}
	return nil
}

func newBackupCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the database to FILE (safe while serve runs)",
		Long: `Write a consistent copy of the database to FILE with SQLite's VACUUM INTO: one snapshot,
taken without stopping serve or its writers. FILE must not exist. The copy keeps the database's
epoch; restoring it starts a new one.`,
		Example: `  gateway backup /var/backups/gateway-$(date +%F).db`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.Backup(ctx, a[0]); err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "backup written to %s\n", a[0])
			return nil
		},
	}
}

func newRestoreCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the database with a backup, under a new epoch",
		Long: `Replace the data directory's database with the backup FILE. serve must be stopped.

The backup is checked (a gateway database this binary can read, intact, and not older than
ERP5 keeps its dedupe records, when the receiver has said how long). The restored database
gets a new epoch: writes queued from now on can never reuse a key ERP5 has seen. Entries the
backup holds keep their epoch and are settled through ERP5's results before anything of them
is resent, so nothing ERP5 already applied is applied twice; entries that were being sent
become uncertain.

What is lost: every write acknowledged after the backup was taken (in the replica and in the
outbox — those ERP5 had received come back with the downlink, the others are gone), peers
paired and revoked since, and write keys recorded since (ERP5 still recognises a browser's
resend of a key it saw). The replaced database is kept beside it as gateway.db.pre-restore-TIME.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			lock, err := m.lockDataDir(ctx)
			if err != nil {
				return err
			}
			defer lock.Release()
			res, err := sqlite.Restore(ctx, a[0], m.DBPath(), sqlite.RestoreOptions{})
			if err != nil {
				return err
			}
			taken := "at an unknown time"
			if !res.BackupAt.IsZero() {
				taken = "taken " + res.BackupAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(m.Stdout, "restored %s (%s); new epoch %s\n", a[0], taken, res.Epoch)
			if res.Uncertain > 0 {
				fmt.Fprintf(m.Stdout, "%d %s that were being sent are uncertain: ERP5's results settle them\n",
					res.Uncertain, obPlural(res.Uncertain, "entry", "entries"))
			}
			if res.Previous != "" {
				fmt.Fprintf(m.Stdout, "the replaced database is kept as %s\n", res.Previous)
			}
			fmt.Fprintln(m.Stdout, "writes acknowledged after the backup was taken are lost")
			return nil
		},
	}
}

func newPromoteCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "promote",
		Short: "Make a standby's replicated database the live one, under a new epoch",
		Long: `Make this data directory's database — a standby's copy, replicated with a tool such as
Litestream — the live one: it gets a new epoch, so that writes queued from now on can never
reuse a key ERP5 has seen, and entries that were being sent become uncertain (settled through
ERP5's results). Entries the copy holds keep their epoch and are settled through ERP5's
results before anything of them is resent. Writes the old primary acknowledged after the last
replicated point are lost. Run it before starting serve on the standby.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			lock, err := m.lockDataDir(ctx)
			if err != nil {
				return err
			}
			defer lock.Release()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			epoch, uncertain, err := db.Promote(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "promoted; new epoch %s", epoch)
			if uncertain > 0 {
				fmt.Fprintf(m.Stdout, "; %d %s that were being sent are uncertain", uncertain, obPlural(uncertain, "entry", "entries"))
			}
			fmt.Fprintln(m.Stdout)
			return nil
		},
	}
}
