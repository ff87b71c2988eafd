package testsvc

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"
)

var (
	sharedPG    *Postgres
	sharedPGErr error
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sharedPG, sharedPGErr = StartPostgres(ctx)
	cancel()
	code := m.Run()
	if err := sharedPG.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}

func TestPostgresNewDatabase(t *testing.T) {
	RequireOrSkip(t, sharedPGErr)
	Uses(t, "postgres")
	ctx := context.Background()
	if len(sharedPG.Dir) > 60 {
		t.Errorf("socket directory %q too long for a unix socket path", sharedPG.Dir)
	}
	tests := []struct {
		name string
	}{
		{"TestSomething/sub-case"},
		{"TestSomething/sub-case"}, // same name: a distinct database
		{"123 starts with a digit"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		dsn, err := sharedPG.NewDatabase(ctx, tt.name)
		if err != nil {
			t.Fatalf("NewDatabase(%q): %v", tt.name, err)
		}
		if seen[dsn] {
			t.Fatalf("NewDatabase(%q) returned an existing database %s", tt.name, dsn)
		}
		seen[dsn] = true
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = db.QueryRowContext(ctx,
			`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n)
		db.Close()
		if err != nil {
			t.Fatalf("query %s: %v", dsn, err)
		}
		if n != 0 {
			t.Errorf("database %s has %d tables, want an empty one", dsn, n)
		}
	}
}

func TestRequireOrSkipNil(t *testing.T) {
	RequireOrSkip(t, nil) // must neither skip nor fail
}
