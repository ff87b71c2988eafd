package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"

	"example.org/backend/ent/migrate/migrations"
	"example.org/backend/ent/migrate/migtool"
	"example.org/backend/internal/testsvc"
)

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

// devDB returns a clean dev database of the dialect.
func devDB(t *testing.T, dialectName string) *sql.DB {
	t.Helper()
	var (
		db  *sql.DB
		err error
	)
	switch dialectName {
	case "sqlite3":
		// Unique name: a private in-memory database for this test.
		db, err = sql.Open("sqlite3", "file:"+strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"?mode=memory&_fk=1")
		if err == nil {
			db.SetMaxOpenConns(1)
		}
	case "postgres":
		testsvc.RequireOrSkip(t, sharedPGErr)
		testsvc.Uses(t, "postgres")
		var dsn string
		if dsn, err = sharedPG.NewDatabase(context.Background(), t.Name()); err == nil {
			db, err = sql.Open("pgx", dsn)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestDirectoriesMatchSchema is the drift check: for each dialect, the
// embedded atlas.sum matches the files, and replaying the directory gives
// exactly the Ent schema (Atlas replay diff → no plan).
func TestDirectoriesMatchSchema(t *testing.T) {
	for _, d := range migtool.Dialects {
		t.Run(d, func(t *testing.T) {
			dir, err := migtool.LoadDir(migrations.FS, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := atlasmigrate.Validate(dir); err != nil {
				t.Fatalf("atlas.sum does not match the migration files (re-hash with ent/migrate/main.go hash): %v", err)
			}
			files, _ := dir.Files()
			if len(files) < 2 {
				t.Fatalf("%d migrations, want at least base + search", len(files))
			}
			err = migtool.Diff(context.Background(), devDB(t, d), d, dir, "drift", "99999999999999")
			if !errors.Is(err, migtool.ErrNoPlan) {
				t.Fatalf("migrations do not produce the Ent schema (err=%v); generate a migration with "+
					"`go run -tags sqlite_fts5 ./ent/migrate/main.go diff NAME`. Missing:\n%s", err, joinWritten(dir.Written()))
			}
		})
	}
}

// TestDriftIsDetected proves the drift check can fail: a directory whose
// base migration lacks an index, re-hashed, yields a plan that adds it; an
// edited file without re-hash fails validation.
func TestDriftIsDetected(t *testing.T) {
	const index = "pubsubitem_node_id_position"
	for _, d := range migtool.Dialects {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			dir, err := migtool.LoadDir(migrations.FS, d)
			if err != nil {
				t.Fatal(err)
			}
			files, _ := dir.Files()
			base := files[0]
			var kept []string
			for _, line := range strings.SplitAfter(string(base.Bytes()), "\n") {
				if strings.Contains(line, "CREATE INDEX") && strings.Contains(line, index) {
					continue
				}
				kept = append(kept, line)
			}
			if err := dir.WriteFile(base.Name(), []byte(strings.Join(kept, ""))); err != nil {
				t.Fatal(err)
			}
			if err := atlasmigrate.Validate(dir); !errors.Is(err, atlasmigrate.ErrChecksumMismatch) {
				t.Fatalf("Validate of an edited file: err = %v, want checksum mismatch", err)
			}
			if err := migtool.Rehash(dir); err != nil {
				t.Fatal(err)
			}
			err = migtool.Diff(ctx, devDB(t, d), d, dir, "drift", "99999999999999")
			if err != nil {
				t.Fatalf("Diff of a drifted directory: %v, want a written plan", err)
			}
			if got := joinWritten(dir.Written()); !strings.Contains(got, index) {
				t.Fatalf("plan does not recreate %s:\n%s", index, got)
			}
		})
	}
}

func joinWritten(w map[string]string) string {
	var b strings.Builder
	for name, body := range w {
		if strings.HasSuffix(name, ".up.sql") {
			b.WriteString("-- " + name + "\n" + body)
		}
	}
	return b.String()
}
