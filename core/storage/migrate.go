package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite3"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"

	"example.org/backend/ent/migrate/migrations"
)

// Migrations are applied with golang-migrate (v4.20.1) from the embedded
// golang-migrate directories: it reads embed.FS through iofs, keeps its
// state in schema_migrations (version, dirty), locks on PostgreSQL and runs
// each file in one transaction. (Atlas's executor would need a hand-written
// revisions table, a custom embedded Dir, and our own locking and
// per-file transactions.)

// migrationFile is one embedded migration version.
type migrationFile struct {
	Version uint
	Name    string // "<version>_<description>"
}

// embeddedMigrations lists the up migrations of a dialect, by version.
func embeddedMigrations(dialectName string) ([]migrationFile, error) {
	entries, err := fs.ReadDir(migrations.FS, dialectName)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []migrationFile
	for _, e := range entries {
		m, err := source.Parse(e.Name())
		if err != nil || m.Direction != source.Up {
			continue // atlas.sum, down files
		}
		out = append(out, migrationFile{Version: m.Version, Name: strconv.FormatUint(uint64(m.Version), 10) + "_" + m.Identifier})
	}
	slices.SortFunc(out, func(a, b migrationFile) int { return int(int64(a.Version) - int64(b.Version)) })
	if len(out) == 0 {
		return nil, fmt.Errorf("no embedded migrations for %s", dialectName)
	}
	return out, nil
}

// newMigrator returns a golang-migrate instance on db (which it owns and
// closes with Close).
func newMigrator(db *sql.DB, dialectName string) (*migrate.Migrate, error) {
	src, err := iofs.New(migrations.FS, dialectName)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var drv database.Driver
	switch dialectName {
	case DriverSQLite:
		drv, err = migratesqlite.WithInstance(db, &migratesqlite.Config{})
	case DriverPostgres:
		drv, err = migratepgx.WithInstance(db, &migratepgx.Config{})
	default:
		err = fmt.Errorf("unknown dialect %q", dialectName)
	}
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, dialectName, drv)
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	return m, nil
}

// sqliteMigrationDSN opens the file for migrating: foreign keys OFF (Atlas
// table rebuilds inside golang-migrate's transactions would otherwise
// cascade deletes), WAL as the application pool uses.
func sqliteMigrationDSN(path string) string {
	return "file:" + path + "?_fk=0&_journal_mode=WAL&_busy_timeout=5000"
}

// plan is the migration state of a database against the embedded files.
type plan struct {
	files   []migrationFile
	current uint // 0 = no version
	dirty   bool
	pending []migrationFile
}

func (p plan) head() uint { return p.files[len(p.files)-1].Version }

// check refuses dirty databases and databases newer than the binary.
func (p plan) check(where string) error {
	if p.dirty {
		return fmt.Errorf("database %s is dirty at version %d (a migration failed halfway): "+
			"restore the backup taken before the migration, or repair the schema and reset the version in schema_migrations", where, p.current)
	}
	if p.current != 0 && !slices.ContainsFunc(p.files, func(f migrationFile) bool { return f.Version == p.current }) {
		if p.current > p.head() {
			return fmt.Errorf("database %s is at schema version %d, newer than this binary knows (latest %d): "+
				"run the newer binary or restore a backup", where, p.current, p.head())
		}
		return fmt.Errorf("database %s is at unknown schema version %d (this binary knows %d..%d)",
			where, p.current, p.files[0].Version, p.head())
	}
	return nil
}

func readPlan(m *migrate.Migrate, dialectName string) (plan, error) {
	files, err := embeddedMigrations(dialectName)
	if err != nil {
		return plan{}, err
	}
	p := plan{files: files}
	v, dirty, err := m.Version()
	switch {
	case errors.Is(err, migrate.ErrNilVersion):
	case err != nil:
		return p, fmt.Errorf("read schema version: %w", err)
	default:
		p.current, p.dirty = v, dirty
	}
	for _, f := range files {
		if f.Version > p.current {
			p.pending = append(p.pending, f)
		}
	}
	return p, nil
}

// sqlitePageSize is the page size of a new SQLite database. A cached item
// (payload and parsed JSON) takes 2–3 KB: with the default 4 KiB pages
// only one fits per page and a third of the table is empty space; with
// 16 KiB pages six or seven do (issue 22: 4 105 → 2 782 bytes per item in
// the items table). An existing database keeps its page size.
const sqlitePageSize = 16384

// initPageSize gives an empty database file its page size: it must be set
// before the first write, and before the switch to WAL, which writes the
// first page.
func initPageSize(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() > 0 {
		return nil // missing (created below by SQLite), or not new
	}
	db, err := sql.Open(SQLiteFuncsDriver, "file:"+path)
	if err != nil {
		return fmt.Errorf("open new database: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d; VACUUM", sqlitePageSize)); err != nil {
		return fmt.Errorf("set the page size of the new database: %w", err)
	}
	return nil
}

// migrateSQLite backs up (when needed) and migrates the SQLite file on a
// dedicated connection without foreign keys, then checks foreign keys.
func migrateSQLite(ctx context.Context, r resolved, log *slog.Logger) error {
	if err := initPageSize(ctx, r.path); err != nil {
		return err
	}
	db, err := sql.Open(SQLiteFuncsDriver, sqliteMigrationDSN(r.path))
	if err != nil {
		return fmt.Errorf("open database for migration: %w", err)
	}
	db.SetMaxOpenConns(1)
	m, err := newMigrator(db, DriverSQLite)
	if err != nil {
		db.Close()
		return err
	}
	defer m.Close() // closes db
	p, err := readPlan(m, DriverSQLite)
	if err != nil {
		return err
	}
	if err := p.check(r.path); err != nil {
		return err
	}
	if len(p.pending) == 0 {
		return nil
	}
	// Check before migrating: a migration failing half-way on a missing
	// module would leave the database dirty.
	var fts5 bool
	if err := db.QueryRowContext(ctx, "SELECT sqlite_compileoption_used('ENABLE_FTS5')").Scan(&fts5); err != nil || !fts5 {
		return errors.New("this binary's SQLite lacks FTS5: build it with `go build -tags sqlite_fts5` (scripts/run.sh and scripts/test.sh do)")
	}
	if p.current != 0 && !r.noBackup {
		backup, err := backupSQLite(ctx, db, r.dataDir, p.current)
		if err != nil {
			return err
		}
		log.Info("database backed up before migration", "backup", backup, "version", p.current)
	}
	if err := applyUp(ctx, m, p, db, DriverSQLite, r.path, log); err != nil {
		return err
	}
	return foreignKeyCheck(ctx, db)
}

// migratePostgres migrates the PostgreSQL database on its own pool.
func migratePostgres(ctx context.Context, r resolved, log *slog.Logger) error {
	db, err := sql.Open("pgx", r.dsn)
	if err != nil {
		return fmt.Errorf("open database for migration: %w", err)
	}
	m, err := newMigrator(db, DriverPostgres)
	if err != nil {
		db.Close()
		return err
	}
	defer m.Close() // closes db
	p, err := readPlan(m, DriverPostgres)
	if err != nil {
		return err
	}
	where := pgWhere(r.dsn)
	if err := p.check(where); err != nil {
		return err
	}
	if len(p.pending) == 0 {
		return nil
	}
	return applyUp(ctx, m, p, db, DriverPostgres, where, log)
}

// pgWhere names a PostgreSQL database for messages, without credentials.
func pgWhere(dsn string) string {
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(postgres)"
	}
	return fmt.Sprintf("%q on %s:%d", c.Database, c.Host, c.Port)
}

// applyUp applies the pending migrations. A migration with a Go data
// step (jidkeys.go) is reached in two moves: the files up to the one
// before it, then the step in its own transaction on db, then the rest.
func applyUp(ctx context.Context, m *migrate.Migrate, p plan, db *sql.DB, dialectName, where string, log *slog.Logger) error {
	start := time.Now()
	for _, f := range p.pending {
		step := stepFor(f)
		if step == nil {
			continue
		}
		i := slices.IndexFunc(p.files, func(x migrationFile) bool { return x.Version == f.Version })
		if i == 0 {
			return fmt.Errorf("migrate database %s: the data step of %s needs a migration before it", where, f.Name)
		}
		if prev := p.files[i-1].Version; prev > p.current {
			if err := m.Migrate(prev); err != nil && !errors.Is(err, migrate.ErrNoChange) {
				return fmt.Errorf("migrate database %s from version %d to %d: %w", where, p.current, prev, err)
			}
		}
		if err := runDataStep(ctx, db, dialectName, step, log); err != nil {
			return fmt.Errorf("migrate database %s: %s: %w (the database is unchanged at the version before it)", where, f.Name, err)
		}
	}
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate database %s from version %d: %w", where, p.current, err)
	}
	log.Info("database migrated", "from", p.current, "to", p.head(),
		"applied", len(p.pending), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// runDataStep runs a data step in one transaction.
func runDataStep(ctx context.Context, db *sql.DB, dialectName string, step *dataStep, log *slog.Logger) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := step.run(ctx, tx, dialectName, log); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// backupSQLite writes a consistent copy of the database (VACUUM INTO,
// which includes committed WAL frames) to
// <dataDir>/backups/backend-<UTC>-v<version>.db with mode 0600.
func backupSQLite(ctx context.Context, db *sql.DB, dataDir string, version uint) (string, error) {
	dir := filepath.Join(dataDir, backupDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup directory: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("backend-%s-v%d.db", utcStamp(time.Now()), version))
	// VACUUM INTO accepts an existing empty file: create it 0600 first.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create backup file: %w", err)
	}
	f.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("back up database to %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return "", fmt.Errorf("restrict backup file mode: %w", err)
	}
	return path, nil
}

// foreignKeyCheck fails when migrated data violates a foreign key.
func foreignKeyCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return fmt.Errorf("check foreign keys after migration: %w", err)
	}
	defer rows.Close()
	var bad []string
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return fmt.Errorf("check foreign keys after migration: %w", err)
		}
		bad = append(bad, fmt.Sprintf("%s row %d -> %s", table, rowid.Int64, parent))
		if len(bad) >= 10 {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check foreign keys after migration: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("foreign key violations after migration (restore the backup): %v", bad)
	}
	return nil
}

// MigrationStatus is the migration state of a database.
type MigrationStatus struct {
	// Driver is "sqlite3" or "postgres".
	Driver string
	// Current is the applied version (0: none).
	Current uint
	// Dirty is set when a migration failed halfway.
	Dirty bool
	// Head is the newest version this binary knows.
	Head uint
	// Pending and Applied are migration names ("<version>_<name>").
	Pending []string
	Applied []string
}

// Status reads the migration state without migrating or locking: SQLite is
// opened read-only (a missing file means Current=0).
func Status(ctx context.Context, cfg Config) (MigrationStatus, error) {
	r, err := cfg.resolve()
	if err != nil {
		return MigrationStatus{}, err
	}
	files, err := embeddedMigrations(r.driver)
	if err != nil {
		return MigrationStatus{}, err
	}
	st := MigrationStatus{Driver: r.driver, Head: files[len(files)-1].Version}
	switch r.driver {
	case DriverSQLite:
		if _, err := os.Stat(r.path); errors.Is(err, os.ErrNotExist) {
			break
		}
		db, err := sql.Open(SQLiteFuncsDriver, "file:"+r.path+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			return st, fmt.Errorf("open database: %w", err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx,
			`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
			return st, fmt.Errorf("read schema version: %w", err)
		}
		if n > 0 {
			if err := readVersion(ctx, db, &st); err != nil {
				return st, err
			}
		}
	case DriverPostgres:
		db, err := sql.Open("pgx", r.dsn)
		if err != nil {
			return st, fmt.Errorf("open database: %w", err)
		}
		defer db.Close()
		var exists bool
		if err := db.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return st, fmt.Errorf("read schema version: %w", err)
		}
		if exists {
			if err := readVersion(ctx, db, &st); err != nil {
				return st, err
			}
		}
	}
	for _, f := range files {
		if f.Version <= st.Current {
			st.Applied = append(st.Applied, f.Name)
		} else {
			st.Pending = append(st.Pending, f.Name)
		}
	}
	return st, nil
}

func readVersion(ctx context.Context, db *sql.DB, st *MigrationStatus) error {
	var v int64
	err := db.QueryRowContext(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&v, &st.Dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	case v > 0:
		st.Current = uint(v)
	}
	return nil
}
