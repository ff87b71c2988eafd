package search

import (
	"context"
	"os"
	"testing"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
)

// sharedPG is the PostgreSQL cluster of this package's tests.
var (
	sharedPG    *testsvc.Postgres
	sharedPGErr error
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sharedPG, sharedPGErr = testsvc.StartPostgres(ctx)
	cancel()
	code := m.Run()
	if err := sharedPG.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// engines are the database engines the tests run on.
var engines = []string{storage.DriverSQLite, storage.DriverPostgres}

// openEngine opens a fresh, migrated database of engine e.
func openEngine(tb testing.TB, e string) *storage.Store {
	tb.Helper()
	cfg := storage.Config{Driver: storage.DriverSQLite, DataDir: tb.TempDir()}
	if e == storage.DriverPostgres {
		testsvc.RequireOrSkip(tb, sharedPGErr)
		dsn, err := sharedPG.NewDatabase(context.Background(), tb.Name())
		if err != nil {
			tb.Fatal(err)
		}
		cfg = storage.Config{Driver: storage.DriverPostgres, DSN: dsn}
	}
	s, err := storage.Open(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatalf("open %s: %v", e, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

// forEachEngine runs f as a subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, s *storage.Store)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e, func(t *testing.T) {
			if e == storage.DriverPostgres {
				testsvc.Uses(t, "postgres")
			}
			f(t, openEngine(t, e))
		})
	}
}
