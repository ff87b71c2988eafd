package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"

	"example.org/backend/ent"
	"example.org/backend/ent/migrate/migtool"
	"example.org/backend/ent/pubsubitem"
)

// rawDB opens cfg's database without Open (no lock, no migration): for
// migrating (sqlite: foreign keys off) or for the application.
func rawDB(t *testing.T, e engine, cfg Config, forMigration bool) *sql.DB {
	t.Helper()
	r, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	var db *sql.DB
	if e.name == DriverSQLite {
		if err := os.MkdirAll(r.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		dsn := sqliteAppDSN(r.path)
		if forMigration {
			dsn = sqliteMigrationDSN(r.path)
		}
		db, err = sql.Open("sqlite3", dsn)
		db.SetMaxOpenConns(1)
	} else {
		db, err = sql.Open("pgx", r.dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// tables lists the tables of the database (excluding FTS5 shadow tables).
func tables(t *testing.T, e engine, db *sql.DB) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'pubsub_items_fts_%'`
	if e.name == DriverPostgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// searchObjects lists the hand-written search objects present.
func searchObjects(t *testing.T, e engine, db *sql.DB) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE name IN ('pubsub_items_fts', 'pubsub_items_fts_ai', 'pubsub_items_fts_ad', 'pubsub_items_fts_au') ORDER BY name`
	if e.name == DriverPostgres {
		q = `SELECT relname FROM pg_class WHERE relname IN ('pubsub_items_search', 'pubsub_items_search_tsv')
UNION ALL SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pubsub_items_search_%'
UNION ALL SELECT proname FROM pg_proc WHERE proname = 'pubsub_items_search_sync' ORDER BY 1`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// wantSearchObjects is what the search migration creates, per dialect.
var wantSearchObjects = map[string]int{DriverSQLite: 4, DriverPostgres: 5}

// TestUpDownUp migrates to head, walks every down file back to an empty
// schema, then migrates up again; the result matches the Ent schema.
func TestUpDownUp(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		files, err := embeddedMigrations(e.name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := newMigrator(rawDB(t, e, cfg, true), e.name)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		check := rawDB(t, e, cfg, false)
		defer check.Close()

		if err := m.Up(); err != nil {
			t.Fatalf("up: %v", err)
		}
		upTables := tables(t, e, check)
		if got := len(searchObjects(t, e, check)); got != wantSearchObjects[e.name] {
			t.Errorf("after up: %d search objects, want %d", got, wantSearchObjects[e.name])
		}
		// Down one step at a time, through every down file.
		for i := len(files) - 1; i >= 0; i-- {
			if err := m.Steps(-1); err != nil {
				t.Fatalf("down from %s: %v", files[i].Name, err)
			}
			v, dirty, err := m.Version()
			switch {
			case i == 0 && errors.Is(err, migrate.ErrNilVersion):
			case err != nil:
				t.Fatalf("version after down from %s: %v", files[i].Name, err)
			case dirty || v != files[i-1].Version:
				t.Fatalf("after down from %s: version %d dirty=%v, want %d", files[i].Name, v, dirty, files[i-1].Version)
			}
			if strings.HasSuffix(files[i].Name, "_search") {
				if got := searchObjects(t, e, check); len(got) != 0 {
					t.Errorf("after search down: search objects left: %v", got)
				}
			}
		}
		if got := tables(t, e, check); !slices.Equal(got, []string{"schema_migrations"}) {
			t.Errorf("after all downs, tables = %v, want only schema_migrations", got)
		}
		if err := m.Up(); err != nil {
			t.Fatalf("up again: %v", err)
		}
		if got := tables(t, e, check); !slices.Equal(got, upTables) {
			t.Errorf("tables after up again = %v, want %v", got, upTables)
		}
		if got := len(searchObjects(t, e, check)); got != wantSearchObjects[e.name] {
			t.Errorf("after up again: %d search objects, want %d", got, wantSearchObjects[e.name])
		}
		if written, err := migtool.LiveDiff(ctx, check, e.name); !errors.Is(err, migtool.ErrNoPlan) {
			t.Errorf("live schema differs from Ent schema after up/down/up (err=%v): %v", err, written)
		}
	})
}

// seed inserts profiles, parameters, nodes and items through Ent; it
// returns the number of items.
func seed(t *testing.T, ctx context.Context, c *ent.Client, profiles, nodesPer, itemsPer int) int {
	t.Helper()
	total := 0
	for p := 0; p < profiles; p++ {
		prof, err := c.Profile.Create().SetName(fmt.Sprintf("p%d", p)).SetJid(fmt.Sprintf("p%d@localhost", p)).Save(ctx)
		if err != nil {
			t.Fatalf("seed profile: %v", err)
		}
		if _, err := c.Param.Create().SetProfile(prof).SetCategory("conn").SetName("password").
			SetSecret([]byte{1, 2, 3}).Save(ctx); err != nil {
			t.Fatalf("seed param: %v", err)
		}
		for n := 0; n < nodesPer; n++ {
			node, err := c.PubsubNode.Create().SetProfile(prof).SetService("pubsub.localhost").
				SetName(fmt.Sprintf("node%d", n)).SetSyncState("complete").Save(ctx)
			if err != nil {
				t.Fatalf("seed node: %v", err)
			}
			bulk := make([]*ent.PubsubItemCreate, itemsPer)
			for i := range bulk {
				bulk[i] = c.PubsubItem.Create().SetNode(node).SetItemID(fmt.Sprintf("i%d", i)).
					SetPayload([]byte(fmt.Sprintf(`<item id="i%d"><entry>x</entry></item>`, i))).
					SetSearchText(fmt.Sprintf("élan item%d", i)).SetPosition(int64(i))
			}
			if err := c.PubsubItem.CreateBulk(bulk...).Exec(ctx); err != nil {
				t.Fatalf("seed items: %v", err)
			}
			total += itemsPer
		}
	}
	return total
}

// TestMigrateKeepsData puts data in a database at migration 1, then opens
// it: the data survive the migration to head, the search index covers the
// old rows, and (SQLite) a 0600 backup of version 1 was written first.
func TestMigrateKeepsData(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		cfg := e.config(t)
		files, err := embeddedMigrations(e.name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := newMigrator(rawDB(t, e, cfg, true), e.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Migrate(files[0].Version); err != nil {
			t.Fatalf("migrate to %s: %v", files[0].Name, err)
		}
		m.Close()

		app := rawDB(t, e, cfg, false)
		c := ent.NewClient(ent.Driver(entsqlOpen(e.name, app)))
		items := seed(t, ctx, c, 2, 3, 40)
		c.Close()

		s := openStore(t, cfg)
		st, err := Status(ctx, cfg)
		if err != nil || st.Current != files[len(files)-1].Version {
			t.Fatalf("Status after Open = %+v, %v; want head", st, err)
		}
		for table, want := range map[string]int{"profiles": 2, "params": 2, "pubsub_nodes": 6, "pubsub_items": items} {
			if got := countRows(t, s.DB, table); got != want {
				t.Errorf("%s: %d rows after migration, want %d", table, got, want)
			}
		}
		// Rows that predate the search migration are indexed.
		n, err := s.Client.PubsubItem.Query().Where(s.MatchText("elan")).Count(ctx)
		if err != nil || n != items {
			t.Errorf("full-text matches of pre-existing rows = %d (err %v), want %d", n, err, items)
		}
		if e.name != DriverSQLite {
			return
		}
		backups, _ := filepath.Glob(filepath.Join(cfg.DataDir, backupDir, "backend-*.db"))
		if len(backups) != 1 {
			t.Fatalf("backups = %v, want one", backups)
		}
		if want := fmt.Sprintf("-v%d.db", files[0].Version); !strings.HasSuffix(backups[0], want) {
			t.Errorf("backup %s does not end with %s", backups[0], want)
		}
		assertMode(t, backups[0], 0o600)
		assertMode(t, filepath.Join(cfg.DataDir, backupDir), 0o700)
		// The backup is a complete copy at version 1.
		b, err := sql.Open("sqlite3", "file:"+backups[0]+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		var v int64
		if err := b.QueryRow(`SELECT version FROM schema_migrations`).Scan(&v); err != nil || uint(v) != files[0].Version {
			t.Errorf("backup version = %d (err %v), want %d", v, err, files[0].Version)
		}
		if got := countRows(t, b, "pubsub_items"); got != items {
			t.Errorf("backup holds %d items, want %d", got, items)
		}
	})
}

// TestCascadeDeletes checks profile → node → item cascades (and that the
// search index follows them).
func TestCascadeDeletes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := openStore(t, e.config(t))
		seed(t, ctx, s.Client, 2, 2, 5)
		if _, err := s.Client.Profile.Delete().Exec(ctx); err != nil {
			t.Fatalf("delete profiles: %v", err)
		}
		for _, table := range []string{"params", "pubsub_nodes", "pubsub_items"} {
			if got := countRows(t, s.DB, table); got != 0 {
				t.Errorf("%s: %d rows left after deleting profiles", table, got)
			}
		}
		if got := searchRows(t, s); got != 0 {
			t.Errorf("search index: %d rows left after cascade", got)
		}
		if n, _ := s.Client.PubsubItem.Query().Where(pubsubitem.ItemID("i1")).Count(ctx); n != 0 {
			t.Errorf("items left: %d", n)
		}
	})
}

// TestNewDatabasePageSize: a new SQLite database gets sqlitePageSize (set
// before the switch to WAL); an existing one keeps its own.
func TestNewDatabasePageSize(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Driver: DriverSQLite, DataDir: dir})
	var size int
	var mode string
	if err := s.DB.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if size != sqlitePageSize || mode != "wal" {
		t.Errorf("new database: page_size %d, journal_mode %s; want %d, wal", size, mode, sqlitePageSize)
	}

	old := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite3", "file:"+old+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := initPageSize(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	db, err = sql.Open("sqlite3", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA page_size").Scan(&size); err != nil || size != 4096 {
		t.Errorf("existing database: page_size %d (%v), want it kept at 4096", size, err)
	}
}

// clientBefore migrates the database of cfg up to the version before the
// first embedded migration that is, and returns an Ent client on it (the
// application's kind of connection), for a test that writes rows as the
// older schema had them before the migration runs.
func clientBefore(t *testing.T, e engine, cfg Config, is func(migrationFile) bool) *ent.Client {
	t.Helper()
	files, err := embeddedMigrations(e.name)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(files, is)
	if i < 1 {
		t.Fatalf("no migration of that kind after the first in %v", files)
	}
	m, err := newMigrator(rawDB(t, e, cfg, true), e.name)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(files[i-1].Version); err != nil {
		t.Fatal(err)
	}
	m.Close()
	return ent.NewClient(ent.Driver(entsqlOpen(e.name, rawDB(t, e, cfg, false))))
}
