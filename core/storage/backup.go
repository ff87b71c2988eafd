package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrPostgres is wrapped by the errors of Backup and Restore on a
// PostgreSQL database: those are the jobs of pg_dump and pg_restore
// (PostgresError says the commands).
var ErrPostgres = errors.New("backup and restore of PostgreSQL databases use pg_dump and pg_restore")

// PostgresError refuses a backup or restore of a PostgreSQL database and
// gives the command to use instead.
type PostgresError struct {
	// Command is the pg_dump or pg_restore command line (without password).
	Command string
	restore bool
}

func (e *PostgresError) Error() string {
	if e.restore {
		return "the database is PostgreSQL: restore it with pg_restore, the daemon stopped (the next start migrates it): " + e.Command
	}
	return "the database is PostgreSQL: back it up with pg_dump (the daemon may keep running): " + e.Command
}

func (e *PostgresError) Unwrap() error { return ErrPostgres }

// pgCommand builds a pg_dump/pg_restore command for the database of dsn,
// with the connection given as options (the password is left out: pg_dump
// asks for it or reads ~/.pgpass / PGPASSWORD).
func pgCommand(dsn, tool, file string) string {
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		return tool + " … " + file
	}
	args := []string{tool}
	if c.Host != "" {
		args = append(args, "--host="+shellQuote(c.Host))
	}
	if c.Port != 0 {
		args = append(args, "--port="+strconv.Itoa(int(c.Port)))
	}
	if c.User != "" {
		args = append(args, "--username="+shellQuote(c.User))
	}
	switch tool {
	case "pg_dump":
		args = append(args, "--format=custom", "--file="+shellQuote(file), shellQuote(c.Database))
	default:
		args = append(args, "--clean", "--if-exists", "--dbname="+shellQuote(c.Database), shellQuote(file))
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_-+=:,./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// BackupInfo describes a database copy.
type BackupInfo struct {
	// Path is the copy's absolute path.
	Path string
	// Source is the database file it was copied from.
	Source string
	// Bytes is the copy's size.
	Bytes int64
	// Version is its schema version.
	Version uint
	// Profiles and Items count its profiles and cached items.
	Profiles, Items int64
}

// Backup writes a consistent copy of the SQLite database of cfg to dest
// (mode 0600) with VACUUM INTO, which reads through SQLite and so includes
// what is still in the WAL: a daemon may be using the database meanwhile.
// dest must not exist; the copy is written beside it under a temporary name,
// checked (integrity, schema version) and only then given its name. The
// source is opened read-only. A PostgreSQL database gives a *PostgresError.
func Backup(ctx context.Context, cfg Config, dest string) (BackupInfo, error) {
	r, err := cfg.resolve()
	if err != nil {
		return BackupInfo{}, err
	}
	if r.driver == DriverPostgres {
		return BackupInfo{}, &PostgresError{Command: pgCommand(r.dsn, "pg_dump", dest)}
	}
	if _, err := os.Stat(r.path); errors.Is(err, fs.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("no database at %s: nothing to back up (is --data-dir or --config the daemon's?)", r.path)
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup file: %w", err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return BackupInfo{}, fmt.Errorf("%s exists: choose another file name, or remove it first (a backup never overwrites a file)", abs)
	}
	if same, _ := sameFile(abs, r.path); same || abs == r.path {
		return BackupInfo{}, fmt.Errorf("%s is the database itself: choose another file", abs)
	}
	src, err := sql.Open(SQLiteFuncsDriver, "file:"+r.path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("open database: %w", err)
	}
	defer src.Close()
	src.SetMaxOpenConns(1)
	tmp, err := vacuumInto(ctx, src, abs)
	if err != nil {
		return BackupInfo{}, err
	}
	defer os.Remove(tmp) // a no-op once linked and removed
	info, err := checkCopy(ctx, tmp)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("the copy failed its check: %w", err)
	}
	// Link then unlink: never replaces a file created meanwhile.
	if err := os.Link(tmp, abs); err != nil {
		return BackupInfo{}, fmt.Errorf("name the backup %s: %w", abs, err)
	}
	os.Remove(tmp)
	syncDir(filepath.Dir(abs))
	info.Path, info.Source = abs, r.path
	return info, nil
}

// vacuumInto writes a copy of db's database to a new temporary file
// beside final (mode 0600) and returns its path.
func vacuumInto(ctx context.Context, db *sql.DB, final string) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmp := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".partial-"+hex.EncodeToString(b[:]))
	// VACUUM INTO accepts an existing empty file: create it 0600 first.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	f.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("copy the database to %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if f, err := os.Open(tmp); err == nil {
		err = f.Sync()
		f.Close()
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("sync %s: %w", tmp, err)
		}
	}
	return tmp, nil
}

// immutableDSN opens a database file read-only without creating -wal,
// -shm or lock files beside it (for files no daemon uses: copies, backups).
func immutableDSN(path string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&immutable=1"
}

// checkCopy checks a database file (integrity, a backend schema this binary
// knows) and counts what it holds.
func checkCopy(ctx context.Context, path string) (BackupInfo, error) {
	db, err := sql.Open(SQLiteFuncsDriver, immutableDSN(path))
	if err != nil {
		return BackupInfo{}, err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err != nil {
		return BackupInfo{}, fmt.Errorf("%s is not an SQLite database (%w)", path, err)
	}
	if res != "ok" {
		return BackupInfo{}, fmt.Errorf("%s is damaged (SQLite quick_check: %s)", path, res)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return BackupInfo{}, fmt.Errorf("read %s: %w", path, err)
	}
	if n == 0 {
		return BackupInfo{}, fmt.Errorf("%s is an SQLite database, but not one of this daemon (no schema_migrations table)", path)
	}
	st := MigrationStatus{}
	if err := readVersion(ctx, db, &st); err != nil {
		return BackupInfo{}, err
	}
	files, err := embeddedMigrations(DriverSQLite)
	if err != nil {
		return BackupInfo{}, err
	}
	p := plan{files: files, current: st.Current, dirty: st.Dirty}
	if err := p.check(path); err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{Version: st.Current}
	if fi, err := os.Stat(path); err == nil {
		info.Bytes = fi.Size()
	}
	// Counts are for people; a schema without these tables counts 0.
	_ = db.QueryRowContext(ctx, `SELECT count(*) FROM profiles`).Scan(&info.Profiles)
	_ = db.QueryRowContext(ctx, `SELECT count(*) FROM pubsub_items`).Scan(&info.Items)
	return info, nil
}

// RestoreInfo describes a restore.
type RestoreInfo struct {
	// Restored is what the backup held (its schema version before migration).
	Restored BackupInfo
	// Database is the database file now holding the backup's data.
	Database string
	// MigratedTo is the schema version after migration (= Restored.Version
	// when the backup was current).
	MigratedTo uint
	// Previous is the copy of the database that was replaced ("" when
	// there was none), in <data_dir>/backups.
	Previous string
}

// Restore replaces the SQLite database of cfg with the backup src: with
// no daemon running (it takes the daemon's lock, and fails with ErrLocked
// otherwise), it checks src (integrity, a schema this binary knows), copies
// it beside the database, migrates the copy to this binary's schema, keeps
// a copy of the database it replaces in <data_dir>/backups, and only then
// puts the copy in place (mode 0600). src itself is never written. A
// PostgreSQL database gives a *PostgresError.
func Restore(ctx context.Context, cfg Config, src string, log *slog.Logger) (RestoreInfo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := cfg.resolve()
	if err != nil {
		return RestoreInfo{}, err
	}
	if r.driver == DriverPostgres {
		return RestoreInfo{}, &PostgresError{Command: pgCommand(r.dsn, "pg_restore", src), restore: true}
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return RestoreInfo{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return RestoreInfo{}, fmt.Errorf("backup file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return RestoreInfo{}, fmt.Errorf("%s is not a regular file", abs)
	}
	if same, _ := sameFile(abs, r.path); same {
		return RestoreInfo{}, fmt.Errorf("%s is the database itself", abs)
	}
	for _, dir := range []string{r.dataDir, filepath.Dir(r.path)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return RestoreInfo{}, fmt.Errorf("create data directory: %w", err)
		}
	}
	unlock, err := lockFile(filepath.Join(r.dataDir, lockFileName), r.path)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return RestoreInfo{}, fmt.Errorf("a daemon is using the database: stop it first (systemctl stop backend, or SIGTERM), then restore: %w", err)
		}
		return RestoreInfo{}, err
	}
	defer unlock()
	info := RestoreInfo{Database: r.path}
	if info.Restored, err = checkCopy(ctx, abs); err != nil {
		return RestoreInfo{}, err
	}
	info.Restored.Path = abs

	// The copy, beside the database (same file system: the final rename
	// is atomic).
	srcDB, err := sql.Open(SQLiteFuncsDriver, immutableDSN(abs))
	if err != nil {
		return RestoreInfo{}, err
	}
	tmp, err := vacuumInto(ctx, srcDB, r.path)
	srcDB.Close()
	if err != nil {
		return RestoreInfo{}, err
	}
	defer os.Remove(tmp) // a no-op once renamed
	if err := migrateSQLite(ctx, resolved{driver: DriverSQLite, path: tmp, dataDir: r.dataDir, noBackup: true}, log); err != nil {
		return RestoreInfo{}, fmt.Errorf("migrate the restored copy (the database was not changed): %w", err)
	}
	after, err := checkCopy(ctx, tmp)
	if err != nil {
		return RestoreInfo{}, fmt.Errorf("the migrated copy failed its check (the database was not changed): %w", err)
	}
	info.MigratedTo = after.Version

	// Keep what is replaced.
	if st, err := os.Stat(r.path); err == nil && st.Size() > 0 {
		if info.Previous, err = backupBeforeRestore(ctx, r); err != nil {
			return RestoreInfo{}, fmt.Errorf("keep a copy of the current database (nothing was changed): %w", err)
		}
	}
	// No -wal or -shm of the old database may survive next to the new one:
	// SQLite would apply the old WAL to it.
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(r.path + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return RestoreInfo{}, fmt.Errorf("remove %s%s (nothing was changed): %w", r.path, suffix, err)
		}
	}
	if err := os.Rename(tmp, r.path); err != nil {
		return RestoreInfo{}, fmt.Errorf("put the restored database in place: %w", err)
	}
	if err := os.Chmod(r.path, 0o600); err != nil {
		return RestoreInfo{}, err
	}
	syncDir(filepath.Dir(r.path))
	log.Info("database restored", "from", abs, "version", info.Restored.Version, "migrated_to", info.MigratedTo, "previous", info.Previous)
	return info, nil
}

// backupBeforeRestore copies the current database (WAL included) to
// <data_dir>/backups/backend-<UTC>-before-restore.db.
func backupBeforeRestore(ctx context.Context, r resolved) (string, error) {
	dir := filepath.Join(r.dataDir, backupDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup directory: %w", err)
	}
	db, err := sql.Open(SQLiteFuncsDriver, "file:"+r.path+"?_busy_timeout=5000")
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	final := filepath.Join(dir, fmt.Sprintf("backend-%s-before-restore.db", utcStamp(time.Now())))
	tmp, err := vacuumInto(ctx, db, final)
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return final, nil
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// syncDir makes a rename in dir durable (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
