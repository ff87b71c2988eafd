// Package storage opens the daemon's database: it enforces one daemon per
// database, backs the database up before migrating it, applies the embedded
// versioned migrations (ent/migrate/migrations) with golang-migrate, and
// returns an Ent client over the application pool.
//
// Two engines are supported: SQLite (mattn/go-sqlite3, the embedded
// default; build with -tags sqlite_fts5) and PostgreSQL (pgx).
//
// Backups: before migrating a non-empty SQLite database, a consistent copy
// is written with VACUUM INTO to <DataDir>/backups (mode 0600). PostgreSQL
// databases are not backed up automatically: each migration file runs in
// one transaction, and operators back up with their usual tools
// (pg_dump) before upgrading.
package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/mattn/go-sqlite3"      // database/sql driver "sqlite3"

	"example.org/backend/ent"
)

// Driver names accepted in Config.Driver (and reported in Store.Dialect).
const (
	DriverSQLite   = dialect.SQLite   // "sqlite3"
	DriverPostgres = dialect.Postgres // "postgres"
)

// Default file names inside Config.DataDir.
const (
	dbFileName   = "backend.db"
	lockFileName = "backend.lock"
	backupDir    = "backups"
)

// Config says which database to open.
type Config struct {
	// Driver is "sqlite3" (default when empty) or "postgres".
	Driver string
	// DSN is the PostgreSQL URL or key=value DSN. For sqlite3 it is the path
	// of the database file; empty means <DataDir>/backend.db.
	DSN string
	// DataDir holds the SQLite file, its backups and the lock file. With
	// sqlite3 and an empty DataDir, the directory of DSN is used.
	DataDir string
}

// Store is an open, migrated database.
type Store struct {
	// Client is the Ent client over DB.
	Client *ent.Client
	// DB is the application pool.
	DB *sql.DB
	// Dialect is "sqlite3" or "postgres".
	Dialect string

	log    *slog.Logger
	unlock func() error
}

// ErrLocked is returned (wrapped, with who holds the lock) by Open when
// another daemon already uses the database.
var ErrLocked = errors.New("database is in use by another daemon")

// resolved is a Config with defaults applied.
type resolved struct {
	driver  string
	dsn     string // postgres DSN
	path    string // sqlite file
	dataDir string
	// noBackup skips the backup before migrating (a restored copy: its
	// source is the backup).
	noBackup bool
}

func (c Config) resolve() (resolved, error) {
	r := resolved{driver: c.Driver, dataDir: c.DataDir}
	if r.driver == "" {
		r.driver = DriverSQLite
	}
	switch r.driver {
	case DriverSQLite:
		r.path = c.DSN
		if r.path == "" {
			if c.DataDir == "" {
				return r, errors.New("storage: sqlite3 needs a data directory or a database path")
			}
			r.path = filepath.Join(c.DataDir, dbFileName)
		}
		r.path = strings.TrimPrefix(r.path, "file:")
		if strings.ContainsAny(r.path, "?#") {
			return r, fmt.Errorf("storage: sqlite3 database path %q must be a plain file path (no URI options)", r.path)
		}
		if r.dataDir == "" {
			r.dataDir = filepath.Dir(r.path)
		}
		abs, err := filepath.Abs(r.path)
		if err != nil {
			return r, fmt.Errorf("storage: database path: %w", err)
		}
		r.path = abs
	case DriverPostgres:
		if c.DSN == "" {
			return r, errors.New("storage: postgres needs a DSN")
		}
		r.dsn = c.DSN
	default:
		return r, fmt.Errorf("storage: unknown driver %q (want %q or %q)", c.Driver, DriverSQLite, DriverPostgres)
	}
	return r, nil
}

// sqliteAppDriver is the database/sql driver of the application pool:
// go-sqlite3 with, on every connection, the daemon's SQL functions
// (registerFuncs), a WAL size limit, reads through a memory mapping
// (sqliteMmapBytes) and a page cache of sqliteCacheKiB. After a checkpoint the WAL is truncated to walSizeLimit; without it the file
// keeps the size of the largest transaction it ever held (28 MiB after a
// 5 000-item sync, for good).
const sqliteAppDriver = "sqlite3-backend"

// walSizeLimit is what the WAL is truncated to after a checkpoint.
const walSizeLimit = 4 << 20

// walCheckpointBytes is the WAL size after which a commit checkpoints it
// (SQLite's wal_autocheckpoint counts pages: its default of 1000 pages is
// 4 MiB with 4 KiB pages but 16 MiB with the 16 KiB pages of new
// databases, so it is set from the page size).
const walCheckpointBytes = 4 << 20

// SQLiteFuncsDriver is the database/sql driver name of go-sqlite3 with
// the daemon's SQL functions (RegisterSQLiteFunc: search_parsed, of the
// cache's search) registered on every connection, and nothing else set. Every connection that writes
// pubsub_items, vacuums or checks the database must have them (the
// search's expression indexes call search_parsed): the backups, restores
// and migrations of this package open their connections with it, and so
// must tools and tests (the plain "sqlite3" driver fails with "no such
// function: search_parsed").
const SQLiteFuncsDriver = "sqlite3-backend-funcs"

// sqliteFunc is an SQL function every SQLite connection of the daemon
// has (RegisterSQLiteFunc).
type sqliteFunc struct {
	name    string
	newImpl func() any // one implementation per connection
	pure    bool
}

// sqliteFuncs holds the registered functions; its lock guards it. They are
// registered by init functions, before any database is opened.
var sqliteFuncs struct {
	mu    sync.Mutex
	funcs []sqliteFunc
}

// RegisterSQLiteFunc makes every SQLite connection opened from now on (the
// application pool and SQLiteFuncsDriver: backups, restores, migrations)
// have the SQL function name, implemented by what newImpl returns (called
// once per connection, so an implementation may keep state of its own
// connection; a function go-sqlite3's RegisterFunc accepts); pure marks it
// deterministic (usable in indexes). Call it from an init function: a
// plugin whose indexes or queries need a function registers it so that
// core/storage knows nothing of it.
func RegisterSQLiteFunc(name string, newImpl func() any, pure bool) {
	sqliteFuncs.mu.Lock()
	defer sqliteFuncs.mu.Unlock()
	sqliteFuncs.funcs = append(sqliteFuncs.funcs, sqliteFunc{name, newImpl, pure})
}

// registerFuncs registers the daemon's SQL functions on c.
func registerFuncs(c *sqlite3.SQLiteConn) error {
	sqliteFuncs.mu.Lock()
	funcs := slices.Clone(sqliteFuncs.funcs)
	sqliteFuncs.mu.Unlock()
	for _, f := range funcs {
		if err := c.RegisterFunc(f.name, f.newImpl(), f.pure); err != nil {
			return fmt.Errorf("register the SQL function %s: %w", f.name, err)
		}
	}
	return nil
}

func init() {
	sql.Register(SQLiteFuncsDriver, &sqlite3.SQLiteDriver{ConnectHook: registerFuncs})
	sql.Register(sqliteAppDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		pageSize := 4096
		rows, err := c.Query("PRAGMA page_size", nil)
		if err != nil {
			return fmt.Errorf("read the page size: %w", err)
		}
		v := make([]driver.Value, 1)
		if err := rows.Next(v); err == nil {
			if n, ok := v[0].(int64); ok && n > 0 {
				pageSize = int(n)
			}
		}
		rows.Close()
		if err := registerFuncs(c); err != nil {
			return err
		}
		_, err = c.Exec(fmt.Sprintf("PRAGMA journal_size_limit = %d; PRAGMA wal_autocheckpoint = %d; PRAGMA mmap_size = %d; PRAGMA cache_size = -%d",
			walSizeLimit, max(1, walCheckpointBytes/pageSize), sqliteMmapBytes, sqliteCacheKiB), nil)
		return err
	}})
}

// sqliteAppDSN is the DSN of the application pool: foreign keys on, WAL,
// a busy timeout, and BEGIN IMMEDIATE for transactions so that concurrent
// writers queue on the busy timeout instead of failing to upgrade a read
// lock ("database is locked"). synchronous=NORMAL is safe in WAL mode (no
// corruption; a power loss may lose the last commits). The connect hook
// sets the WAL limits, the memory mapping and the page cache.
func sqliteAppDSN(path string) string {
	return "file:" + path + "?_fk=1&_journal_mode=WAL&_busy_timeout=5000&_txlock=immediate&_synchronous=NORMAL"
}

// The application pool keeps at most sqliteMaxIdle idle connections (the
// database/sql default, made explicit), and closes one idle for
// sqliteIdleTime: a connection's page cache is freed with it, so a daemon
// that has not queried for that long no longer holds the pages its last
// sync or search read (up to cache_size each); the next query reads them
// from the OS's file cache again.
const (
	sqliteMaxIdle  = 2
	sqliteIdleTime = time.Minute
)

// sqliteMmapBytes is how much of the database file each connection reads
// through a shared memory mapping (PRAGMA mmap_size; SQLite caps it at 2
// GiB on 64-bit Linux): pages read come from the OS's file cache, shared
// by every connection and reclaimable, instead of being copied into each
// connection's page cache. The search benchmark (100 000 items) kept its
// speed with a 2 MiB cache (p50 1.6–1.8 ms vs 1.7–2.2 ms with 64 MiB
// caches and no mapping, tags overlap); a 16 MiB cache without the
// mapping took 2–5× longer. The mapped pages touched count in VmRSS, as
// file pages (≈22 MiB after the footprint benchmark).
const sqliteMmapBytes = 2 << 30

// sqliteCacheKiB is each connection's page cache, in KiB (PRAGMA
// cache_size): with reads mapped, it holds the pages a transaction
// writes, WAL pages and pages beyond the mapping. It was 64 MiB, which a
// 5 000-item sync and the title index filled (≈20 MiB of private memory
// per connection that had read the table).
const sqliteCacheKiB = 8 << 10

// Open locks the database for this daemon, backs it up and migrates it when
// migrations are pending, and opens the application pool. Close releases
// everything.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	var s *Store
	switch r.driver {
	case DriverSQLite:
		s, err = openSQLite(ctx, r, log)
	default:
		s, err = openPostgres(ctx, r, log)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openSQLite(ctx context.Context, r resolved, log *slog.Logger) (_ *Store, err error) {
	for _, dir := range []string{r.dataDir, filepath.Dir(r.path)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	unlock, err := lockFile(filepath.Join(r.dataDir, lockFileName), r.path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// Create the file with mode 0600 before SQLite does (SQLite gives its
	// -wal and -shm files the mode of the database file).
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	f.Close()
	if err := os.Chmod(r.path, 0o600); err != nil {
		return nil, fmt.Errorf("restrict database file mode: %w", err)
	}
	if err := migrateSQLite(ctx, r, log); err != nil {
		return nil, err
	}
	db, err := sql.Open(sqliteAppDriver, sqliteAppDSN(r.path))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// Page caches live as long as their connection: an idle one keeps
	// its cache (up to 64 MiB) until it is closed.
	db.SetMaxIdleConns(sqliteMaxIdle)
	db.SetConnMaxIdleTime(sqliteIdleTime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", r.path, err)
	}
	return newStore(db, DriverSQLite, log, unlock), nil
}

func openPostgres(ctx context.Context, r resolved, log *slog.Logger) (_ *Store, err error) {
	unlock, err := lockPostgres(ctx, r.dsn)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	if err := migratePostgres(ctx, r, log); err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", r.dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return newStore(db, DriverPostgres, log, unlock), nil
}

func newStore(db *sql.DB, dialectName string, log *slog.Logger, unlock func() error) *Store {
	drv := entsql.OpenDB(dialectName, db)
	return &Store{
		Client:  ent.NewClient(ent.Driver(drv)),
		DB:      db,
		Dialect: dialectName,
		log:     log,
		unlock:  unlock,
	}
}

// Close closes the application pool and releases the daemon lock.
func (s *Store) Close() error {
	var errs []error
	if err := s.Client.Close(); err != nil { // closes DB
		errs = append(errs, fmt.Errorf("close database: %w", err))
	}
	if s.unlock != nil {
		if err := s.unlock(); err != nil {
			errs = append(errs, fmt.Errorf("release database lock: %w", err))
		}
		s.unlock = nil
	}
	return errors.Join(errs...)
}

// utcStamp formats t for file names.
func utcStamp(t time.Time) string {
	return t.UTC().Format("20060102T150405Z")
}
