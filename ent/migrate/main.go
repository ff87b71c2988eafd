//go:build ignore

// Command main generates the versioned migrations of the daemon's database
// from the Ent schema, one golang-migrate directory per dialect, and keeps
// their atlas.sum files up to date.
//
// Usage (from the repository root):
//
//	go run -tags sqlite_fts5 ./ent/migrate/main.go diff NAME   # migration from schema changes
//	go run -tags sqlite_fts5 ./ent/migrate/main.go new NAME    # empty pair for hand-written SQL
//	go run -tags sqlite_fts5 ./ent/migrate/main.go hash        # re-hash atlas.sum after editing
//
// Flags: -dialect sqlite3|postgres|all (default all); -pg-dsn URL of an
// empty PostgreSQL database to replay on (default: start a private
// PostgreSQL 15 cluster with internal/testsvc).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"ariga.io/atlas/sql/sqltool"
	"entgo.io/ent/dialect"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"

	"example.org/backend/ent/migrate/migtool"
	"example.org/backend/internal/testsvc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

var validName = regexp.MustCompile(`^[a-z0-9_]+$`)

func run() error {
	dialectFlag := flag.String("dialect", "all", "dialect to generate: sqlite3, postgres or all")
	pgDSN := flag.String("pg-dsn", "", "URL of an empty PostgreSQL dev database (default: start a private cluster)")
	root := flag.String("dir", defaultDir(), "directory holding migrations/<dialect>")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: main.go [flags] diff NAME | new NAME | hash")
		flag.PrintDefaults()
	}
	flag.Parse()
	dialects := migtool.Dialects
	if *dialectFlag != "all" {
		dialects = []string{*dialectFlag}
	}
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		return errors.New("missing command")
	}
	ctx := context.Background()
	version := time.Now().UTC().Format("20060102150405")
	switch cmd := args[0]; cmd {
	case "hash":
		for _, d := range dialects {
			dir, err := sqltool.NewGolangMigrateDir(filepath.Join(*root, d))
			if err != nil {
				return err
			}
			if err := migtool.Rehash(dir); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			slog.Info("re-hashed", "dialect", d)
		}
		return nil
	case "new", "diff":
		if len(args) != 2 || !validName.MatchString(args[1]) {
			return fmt.Errorf("%s needs one NAME made of [a-z0-9_]", cmd)
		}
		name := args[1]
		for _, d := range dialects {
			dir, err := sqltool.NewGolangMigrateDir(filepath.Join(*root, d))
			if err != nil {
				return err
			}
			if cmd == "new" {
				err = writeEmpty(dir, d, version, name)
			} else {
				err = diff(ctx, dir, d, version, name, *pgDSN)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
		return nil
	default:
		flag.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// diff writes the migration that brings dir to the Ent schema, if any.
func diff(ctx context.Context, dir *sqltool.GolangMigrateDir, d, version, name, pgDSN string) error {
	db, cleanup, err := devDB(ctx, d, pgDSN)
	if err != nil {
		return err
	}
	defer cleanup()
	switch err := migtool.Diff(ctx, db, d, dir, name, version); {
	case errors.Is(err, migtool.ErrNoPlan):
		slog.Info("no changes", "dialect", d)
		return nil
	case err != nil:
		return err
	}
	slog.Info("written; review the down file (SQLite table rebuild downs are drafts)",
		"dialect", d, "version", version, "name", name)
	return nil
}

// writeEmpty writes an empty up/down pair for hand-written SQL and re-hashes.
func writeEmpty(dir *sqltool.GolangMigrateDir, d, version, name string) error {
	header := "-- Hand-written migration (" + d + "). Edit, then re-hash: go run -tags sqlite_fts5 ./ent/migrate/main.go hash\n"
	for _, kind := range []string{"up", "down"} {
		if err := dir.WriteFile(fmt.Sprintf("%s_%s.%s.sql", version, name, kind), []byte(header)); err != nil {
			return err
		}
	}
	slog.Info("written", "dialect", d, "version", version, "name", name)
	return migtool.Rehash(dir)
}

// devDB returns a clean dev database of dialect d.
func devDB(ctx context.Context, d, pgDSN string) (*sql.DB, func(), error) {
	switch d {
	case dialect.SQLite:
		db, err := sql.Open("sqlite3", "file:dev?mode=memory&_fk=1")
		if err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(1) // one in-memory database
		return db, func() { db.Close() }, nil
	case dialect.Postgres:
		var pg *testsvc.Postgres
		if pgDSN == "" {
			var err error
			slog.Info("starting a private PostgreSQL")
			if pg, err = testsvc.StartPostgres(ctx); err != nil {
				return nil, nil, err
			}
			if pgDSN, err = pg.NewDatabase(ctx, "dev"); err != nil {
				pg.Stop()
				return nil, nil, err
			}
		}
		db, err := sql.Open("pgx", pgDSN)
		if err != nil {
			pg.Stop()
			return nil, nil, err
		}
		return db, func() { db.Close(); pg.Stop() }, nil
	default:
		return nil, nil, fmt.Errorf("unknown dialect %q", d)
	}
}

// defaultDir is ent/migrate/migrations next to this file.
func defaultDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "ent/migrate/migrations"
	}
	return filepath.Join(filepath.Dir(file), "migrations")
}
