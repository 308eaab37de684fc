package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sitesync.example/gateway"
)

// Backup writes a consistent copy of the database to path with VACUUM INTO: a snapshot of one
// read transaction, safe while serve runs (it does not block writers). The copy keeps the
// epoch; restoring it makes a new one. It records when it was taken (meta backup_at), which
// Restore compares with ERP5's retention. path must not exist.
func (db *DB) Backup(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return gateway.Errorf(gateway.EINVALID, "%s already exists", path)
	}
	at := db.Now()
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err = conn.ExecContext(ctx, `VACUUM INTO ?`, path)
	conn.Close()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("backup: %w", FormatError(err))
	}
	b, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=synchronous(full)")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer b.Close()
	if _, err := b.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, MetaBackupAt, FormatTime(at)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return syncFile(path)
}

// RestoreOptions tunes Restore.
type RestoreOptions struct {
	// Retention is how long ERP5 keeps its dedupe records; 0 means as recorded in the
	// database (MetaRetentionDays, from the receiver's capability), or unknown. A backup older
	// than a known retention is refused: ERP5 may have forgotten the (epoch, seq) of entries
	// the backup still holds, and would apply them twice.
	Retention time.Duration
	// Now is the current time (time.Now when nil).
	Now func() time.Time
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Epoch is the new epoch rows queued from now on take.
	Epoch string
	// BackupAt is when the backup was taken (zero when it does not say).
	BackupAt time.Time
	// Previous is where the replaced database was moved ("" when there was none).
	Previous string
	// Uncertain counts entries that were inflight in the backup, now uncertain.
	Uncertain int
}

// Restore replaces the database at dbPath with the backup at from (docs/DESIGN.md §9). serve must not
// be running. The backup is checked (an SQLite gateway database, not newer than this binary,
// intact, not older than ERP5's retention when that is known), copied beside dbPath, migrated,
// given a new epoch (rows the backup holds keep theirs and are settled through ERP5's results
// before anything of them is resent; entries inflight in it become uncertain), and moved into
// place; the replaced database is kept as dbPath + ".pre-restore-<time>". Writes acknowledged
// after the backup was taken are lost.
func Restore(ctx context.Context, from, dbPath string, opts RestoreOptions) (*RestoreResult, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	res := &RestoreResult{}
	if err := checkBackup(ctx, from, dbPath, opts.Retention, now(), res); err != nil {
		return nil, err
	}
	tmp := dbPath + ".restoring"
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		os.Remove(p)
	}
	if err := copyFile(from, tmp); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	db := NewDB(tmp)
	db.Now = now
	if err := db.Open(ctx); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("restore: %w", err)
	}
	var err error
	if res.Epoch, err = db.newEpoch(ctx, "restore from "+filepath.Base(from)); err == nil {
		res.Uncertain, err = db.RecoverInflight(ctx)
	}
	if err == nil {
		_, err = db.writer.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("restore: %w", err)
	}
	for _, p := range []string{tmp + "-wal", tmp + "-shm"} {
		os.Remove(p)
	}
	if err := syncFile(tmp); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		res.Previous = dbPath + ".pre-restore-" + now().UTC().Format("20060102T150405Z")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if _, err := os.Stat(dbPath + suffix); err == nil {
				if err := os.Rename(dbPath+suffix, res.Previous+suffix); err != nil {
					return nil, fmt.Errorf("restore: keep the replaced database: %w", err)
				}
			}
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// checkBackup opens the backup read-only and checks that it can be restored.
func checkBackup(ctx context.Context, from, dbPath string, retention time.Duration, now time.Time, res *RestoreResult) error {
	if _, err := os.Stat(from); err != nil {
		return gateway.Errorf(gateway.EINVALID, "backup %s: %v", from, err)
	}
	b, err := sql.Open("sqlite", "file:"+from+"?mode=ro")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer b.Close()
	var ok string
	if err := b.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&ok); err != nil || ok != "ok" {
		return gateway.Errorf(gateway.EINVALID, "%s is not an intact SQLite database (%v%s)", from, err, ok)
	}
	names := map[string]bool{}
	rows, err := b.QueryContext(ctx, `SELECT name FROM migrations`)
	if err != nil {
		return gateway.Errorf(gateway.EINVALID, "%s is not a gateway database", from)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names[n] = true
	}
	rows.Close()
	known, _ := migrations()
	for _, n := range known {
		delete(names, strings.TrimPrefix(n, "migration/"))
	}
	for n := range names {
		return fmt.Errorf("restore %s: %w (it has migration %s)", from, ErrSchemaTooNew, n)
	}
	var at string
	if err := b.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaBackupAt).Scan(&at); err == nil {
		res.BackupAt, _ = ParseTime(at)
	}
	if retention == 0 {
		retention = recordedRetention(ctx, b)
		if retention == 0 {
			if cur, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro"); err == nil {
				if _, serr := os.Stat(dbPath); serr == nil {
					retention = recordedRetention(ctx, cur)
				}
				cur.Close()
			}
		}
	}
	if retention > 0 && !res.BackupAt.IsZero() && now.Sub(res.BackupAt) > retention {
		return gateway.Errorf(gateway.EINVALID,
			"backup %s was taken %s ago; ERP5 keeps its dedupe records for %s, so entries in it could be applied twice",
			from, now.Sub(res.BackupAt).Round(time.Hour), retention)
	}
	return nil
}

func recordedRetention(ctx context.Context, q *sql.DB) time.Duration {
	var v string
	if err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, MetaRetentionDays).Scan(&v); err != nil {
		return 0
	}
	days, err := strconv.Atoi(v)
	if err != nil || days <= 0 {
		return 0
	}
	return time.Duration(days) * 24 * time.Hour
}

// Promote makes this database (a standby's replicated copy) the live one: a new epoch, so
// that a standby that lagged never offers ERP5 a key it has seen, and entries left inflight
// become uncertain. Writes the primary acknowledged after the replication point are lost.
func (db *DB) Promote(ctx context.Context) (epoch string, uncertain int, err error) {
	if epoch, err = db.newEpoch(ctx, "promote"); err != nil {
		return "", 0, err
	}
	uncertain, err = db.RecoverInflight(ctx)
	return epoch, uncertain, err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// CleanRestoring removes what a restore killed before it finished left beside dbPath (the
// half-made dbPath + ".restoring" and its WAL files) and reports whether there was any. When
// dbPath itself is missing the restore was cut between its two renames: the restored copy is
// then the only database, so it is kept and the answer is an error asking for the restore
// again. The caller holds the data directory's lock.
func CleanRestoring(dbPath string) (bool, error) {
	tmp := dbPath + ".restoring"
	if _, err := os.Stat(tmp); err != nil {
		return false, nil
	}
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("an interrupted restore left %s and no %s: run the restore again (the replaced database is kept as %s.pre-restore-*)",
			tmp, filepath.Base(dbPath), filepath.Base(dbPath))
	}
	for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return true, nil
}
