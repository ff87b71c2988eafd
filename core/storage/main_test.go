package storage

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	entsql "entgo.io/ent/dialect/sql"

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

// engine is one database engine the tests run on.
type engine struct {
	name string
	// config returns the Config of a fresh, empty database.
	config func(tb testing.TB) Config
}

var engines = []engine{
	{
		name: DriverSQLite,
		config: func(tb testing.TB) Config {
			return Config{Driver: DriverSQLite, DataDir: tb.TempDir()}
		},
	},
	{
		name: DriverPostgres,
		config: func(tb testing.TB) Config {
			testsvc.RequireOrSkip(tb, sharedPGErr)
			dsn, err := sharedPG.NewDatabase(context.Background(), tb.Name())
			if err != nil {
				tb.Fatal(err)
			}
			return Config{Driver: DriverPostgres, DSN: dsn}
		},
	},
}

// forEachEngine runs f as a subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			if e.name == "postgres" {
				testsvc.Uses(t, "postgres")
			}
			f(t, e)
		})
	}
}

// openStore opens cfg and closes the store at the end of the test.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// entsqlOpen wraps a *sql.DB as an Ent driver.
func entsqlOpen(dialectName string, db *sql.DB) *entsql.Driver {
	return entsql.OpenDB(dialectName, db)
}
