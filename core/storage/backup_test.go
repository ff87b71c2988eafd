package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"example.org/backend/ent"
)

// TestBackupRestoreRoundTrip backs up a database a daemon holds open
// (recent writes still in its WAL), changes it, then restores the backup
// with the daemon stopped: the data of the backup are back, full-text
// search included, the replaced database is kept, and the files are 0600.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	cfg := Config{DataDir: t.TempDir()}
	s, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	items := seed(t, ctx, s.Client, 2, 2, 30)
	// Written last, kept in the WAL: the backup must see it.
	if _, err := s.Client.Profile.Create().SetName("late").SetJid("late@localhost").Save(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, dbFileName+"-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("the test needs writes in the WAL: %v %v", fi, err)
	}
	dest := filepath.Join(t.TempDir(), "manual.db")
	info, err := Backup(ctx, cfg, dest)
	if err != nil {
		t.Fatalf("Backup while the daemon holds the database: %v", err)
	}
	if info.Path != dest || info.Profiles != 3 || info.Items != int64(items) || info.Version == 0 || info.Bytes == 0 {
		t.Errorf("backup info = %+v", info)
	}
	assertMode(t, dest, 0o600)
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*partial*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// Never overwrites; never the database itself.
	if _, err := Backup(ctx, cfg, dest); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup onto an existing file: %v", err)
	}
	if _, err := Backup(ctx, cfg, filepath.Join(cfg.DataDir, dbFileName)); err == nil {
		t.Error("backup onto the database accepted")
	}
	// Restore refuses while the daemon runs.
	if _, err := Restore(ctx, cfg, dest, nil); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("restore with the daemon running: %v", err)
	}
	// Life goes on after the backup, then the daemon stops.
	if _, err := s.Client.Profile.Create().SetName("after").SetJid("after@localhost").Save(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.PubsubItem.Delete().Exec(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()

	res, err := Restore(ctx, cfg, dest, nil)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Restored.Profiles != 3 || res.MigratedTo != info.Version || res.Previous == "" || res.Database != filepath.Join(cfg.DataDir, dbFileName) {
		t.Errorf("restore info = %+v", res)
	}
	assertMode(t, res.Database, 0o600)
	assertMode(t, res.Previous, 0o600)
	s = openStore(t, cfg)
	names, err := s.Client.Profile.Query().Order(ent.Asc("name")).Select("name").Strings(ctx)
	if err != nil || strings.Join(names, ",") != "late,p0,p1" {
		t.Errorf("profiles after restore = %v (%v)", names, err)
	}
	if got := countRows(t, s.DB, "pubsub_items"); got != items {
		t.Errorf("%d items after restore, want %d", got, items)
	}
	if n, err := s.Client.PubsubItem.Query().Where(s.MatchText("elan")).Count(ctx); err != nil || n != items {
		t.Errorf("full-text search after restore: %d (%v), want %d", n, err, items)
	}
	// The replaced database (with "after", without items) was kept.
	prev, err := sql.Open("sqlite3", immutableDSN(res.Previous))
	if err != nil {
		t.Fatal(err)
	}
	defer prev.Close()
	if got := countRows(t, prev, "profiles"); got != 4 {
		t.Errorf("the kept copy has %d profiles, want 4", got)
	}
	// The backup itself was not touched: restoring it again gives the same.
	if _, err := os.Stat(dest + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restore created %s-wal beside the backup", dest)
	}
}

// TestRestoreMigratesOldBackup restores a backup at the first schema
// version: it is migrated to this binary's head, data kept.
func TestRestoreMigratesOldBackup(t *testing.T) {
	ctx := context.Background()
	e := engines[0]
	old := e.config(t)
	files, err := embeddedMigrations(DriverSQLite)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMigrator(rawDB(t, e, old, true), DriverSQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(files[0].Version); err != nil {
		t.Fatal(err)
	}
	m.Close()
	app := rawDB(t, e, old, false)
	c := ent.NewClient(ent.Driver(entsqlOpen(DriverSQLite, app)))
	items := seed(t, ctx, c, 1, 1, 25)
	c.Close()

	cfg := Config{DataDir: t.TempDir()}
	res, err := Restore(ctx, cfg, filepath.Join(old.DataDir, dbFileName), nil)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Restored.Version != files[0].Version || res.MigratedTo != files[len(files)-1].Version || res.Previous != "" {
		t.Errorf("restore info = %+v", res)
	}
	s := openStore(t, cfg)
	if got := countRows(t, s.DB, "pubsub_items"); got != items {
		t.Errorf("%d items, want %d", got, items)
	}
	// No pre-migration backup of the restored copy: its source is the backup.
	if b, _ := filepath.Glob(filepath.Join(cfg.DataDir, backupDir, "*")); len(b) != 0 {
		t.Errorf("backups written by the restore: %v", b)
	}
}

// TestRestoreRefusesBadFiles: a file that is not SQLite, an SQLite file of
// another program, a damaged backup and a missing file are refused, and the
// database is unchanged.
func TestRestoreRefusesBadFiles(t *testing.T) {
	ctx := context.Background()
	cfg := Config{DataDir: t.TempDir()}
	s, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, ctx, s.Client, 1, 1, 5)
	s.Close()
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a database\n", 100)), 0o600)
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite3", "file:"+other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE t (x); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	good := filepath.Join(dir, "good.db")
	if _, err := Backup(ctx, cfg, good); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	// The whole middle page, header included (free space alone is not
	// damage integrity_check can see).
	mid := len(raw) / 2 / sqlitePageSize * sqlitePageSize
	for i := mid; i < mid+sqlitePageSize && i < len(raw); i++ {
		raw[i] ^= 0xff
	}
	damaged := filepath.Join(dir, "damaged.db")
	os.WriteFile(damaged, raw, 0o600)
	for file, want := range map[string]string{
		text:                           "not an SQLite database",
		other:                          "not one of this daemon",
		damaged:                        "",
		filepath.Join(dir, "missing"):  "no such file",
		filepath.Join(cfg.DataDir, ""): "not a regular file",
	} {
		_, err := Restore(ctx, cfg, file, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restore %s: %v (want %q)", filepath.Base(file), err, want)
		}
	}
	s = openStore(t, cfg)
	if got := countRows(t, s.DB, "pubsub_items"); got != 5 {
		t.Errorf("the database changed after refused restores: %d items", got)
	}
}

// TestBackupRestorePostgres: on PostgreSQL both say which pg_dump /
// pg_restore command to run, without the password.
func TestBackupRestorePostgres(t *testing.T) {
	cfg := Config{Driver: DriverPostgres, DSN: "postgres://backend:s3cret@db.example:5433/backend?sslmode=disable"}
	_, err := Backup(context.Background(), cfg, "/srv/backend.dump")
	var pe *PostgresError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPostgres) ||
		pe.Command != "pg_dump --host=db.example --port=5433 --username=backend --format=custom --file=/srv/backend.dump backend" {
		t.Errorf("backup: %v", err)
	}
	_, err = Restore(context.Background(), cfg, "/srv/my dump", nil)
	if !errors.As(err, &pe) || pe.Command != "pg_restore --host=db.example --port=5433 --username=backend --clean --if-exists --dbname=backend '/srv/my dump'" ||
		!strings.Contains(err.Error(), "daemon stopped") {
		t.Errorf("restore: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(fmt.Sprint(e), "s3cret") {
			t.Errorf("the password shows: %v", e)
		}
	}
}
