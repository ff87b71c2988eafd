package storage

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"example.org/backend/ent/profile"
)

func TestOpenFreshAndReopen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		files, err := embeddedMigrations(e.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 2 {
			t.Fatalf("want at least 2 migrations (base + search), have %d", len(files))
		}

		s, err := Open(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("Open fresh: %v", err)
		}
		if s.Dialect != e.name {
			t.Errorf("Dialect = %q, want %q", s.Dialect, e.name)
		}
		if _, err := s.Client.Profile.Create().SetName("alice").SetJid("alice@localhost").Save(ctx); err != nil {
			t.Fatalf("create profile: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		st, err := Status(ctx, cfg)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		head := files[len(files)-1]
		if st.Current != head.Version || st.Head != head.Version || st.Dirty || len(st.Pending) != 0 || len(st.Applied) != len(files) {
			t.Errorf("Status after Open = %+v, want current=head=%d, all applied", st, head.Version)
		}

		// Reopen: nothing pending, data kept, no backup taken.
		s = openStore(t, cfg)
		n, err := s.Client.Profile.Query().Where(profile.Name("alice")).Count(ctx)
		if err != nil || n != 1 {
			t.Fatalf("profile after reopen: n=%d err=%v", n, err)
		}
		if e.name == DriverSQLite {
			for _, name := range []string{dbFileName, lockFileName} {
				assertMode(t, filepath.Join(cfg.DataDir, name), 0o600)
			}
			if _, err := os.Stat(filepath.Join(cfg.DataDir, backupDir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("backup directory exists after opening an up-to-date database (err=%v)", err)
			}
		}
	})
}

func TestSecondOpenRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		first, err := Open(ctx, cfg, nil)
		if err != nil {
			t.Fatalf("first Open: %v", err)
		}
		_, err = Open(ctx, cfg, nil)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open: err = %v, want ErrLocked", err)
		}
		t.Logf("second Open refused: %v", err)
		// The message says who holds the lock and what to do.
		for _, want := range []string{"pid", "stop that daemon"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("second Open error %q lacks %q", err, want)
			}
		}
		if err := first.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Released: a new daemon may open it.
		openStore(t, cfg)
	})
}

func TestStatusWithoutDatabase(t *testing.T) {
	dir := t.TempDir()
	st, err := Status(context.Background(), Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	files, _ := embeddedMigrations(DriverSQLite)
	if st.Current != 0 || st.Driver != DriverSQLite || len(st.Pending) != len(files) || len(st.Applied) != 0 {
		t.Errorf("Status = %+v, want nothing applied, %d pending", st, len(files))
	}
	if _, err := os.Stat(filepath.Join(dir, dbFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Status created the database file (err=%v)", err)
	}
}

func TestStatusDoesNotLock(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := e.config(t)
		openStore(t, cfg) // held by a "daemon"
		st, err := Status(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Status while open: %v", err)
		}
		if st.Current != st.Head {
			t.Errorf("Status = %+v, want current = head", st)
		}
	})
}

// TestRefusedStates covers the databases Open must refuse: dirty, and
// newer than the binary.
func TestRefusedStates(t *testing.T) {
	tests := []struct {
		name    string
		set     func(head uint) (version int64, dirty bool)
		wantErr string
	}{
		{"dirty", func(head uint) (int64, bool) { return int64(head), true }, "dirty"},
		{"newer", func(head uint) (int64, bool) { return int64(head) + 1, false }, "newer than this binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				ctx := context.Background()
				cfg := e.config(t)
				s, err := Open(ctx, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				st, _ := Status(ctx, cfg)
				v, dirty := tt.set(st.Head)
				if _, err := s.DB.ExecContext(ctx, rebind(e.name, `UPDATE schema_migrations SET version = ?, dirty = ?`), v, dirty); err != nil {
					t.Fatal(err)
				}
				s.Close()
				_, err = Open(ctx, cfg, nil)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open: err = %v, want one containing %q", err, tt.wantErr)
				}
				t.Logf("refused: %v", err)
			})
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"unknown driver", Config{Driver: "mysql", DataDir: "/tmp"}},
		{"sqlite without path", Config{}},
		{"sqlite uri options", Config{DSN: "/tmp/x.db?mode=ro"}},
		{"postgres without dsn", Config{Driver: DriverPostgres}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(context.Background(), tt.cfg, nil); err == nil {
				t.Fatalf("Open(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %o, want %o", path, got, want)
	}
}

// countRows counts the rows of a table through the raw pool.
func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// TestSQLiteWALTruncated: a transaction larger than the WAL limit grows the
// WAL while it runs; once checkpointed, the next write truncates the file
// back to the limit instead of keeping its largest size for good.
func TestSQLiteWALTruncated(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Driver: DriverSQLite, DataDir: t.TempDir()}
	s := openStore(t, cfg)
	var limit int64
	if err := s.DB.QueryRowContext(ctx, "PRAGMA journal_size_limit").Scan(&limit); err != nil || limit != walSizeLimit {
		t.Fatalf("journal_size_limit = %d (%v), want %d", limit, err, walSizeLimit)
	}
	var pages int
	if err := s.DB.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil || pages*sqlitePageSize != walCheckpointBytes {
		t.Fatalf("wal_autocheckpoint = %d pages of %d bytes (%v), want %d bytes", pages, sqlitePageSize, err, walCheckpointBytes)
	}
	if _, err := s.DB.ExecContext(ctx, "CREATE TABLE wal_test (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for range 3 * walSizeLimit / len(chunk) {
		if _, err := tx.ExecContext(ctx, "INSERT INTO wal_test (b) VALUES (?)", chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(cfg.DataDir, dbFileName+"-wal")
	grown, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if grown.Size() <= walSizeLimit {
		t.Fatalf("the WAL holds %d bytes after a %d-byte transaction", grown.Size(), 3*walSizeLimit)
	}
	// The commit checkpointed the WAL (auto-checkpoint); the next write
	// starts it again from the top, truncating the file to the limit.
	if _, err := s.DB.ExecContext(ctx, "INSERT INTO wal_test (b) VALUES (x'00')"); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() > walSizeLimit {
		t.Errorf("the WAL keeps %d bytes after a checkpoint (limit %d; %d before)", after.Size(), walSizeLimit, grown.Size())
	}
	t.Logf("WAL: %d bytes after the big transaction, %d after the next write", grown.Size(), after.Size())
}
