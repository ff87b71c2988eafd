// Package migtool holds the tooling shared by the migration generator
// (ent/migrate/main.go) and the drift tests: Atlas replay diffs of the Ent
// schema against a golang-migrate directory, on a disk directory or on the
// embedded copy, and re-hashing of atlas.sum.
//
// It is not used by the daemon at run time.
package migtool

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing/fstest"
	"text/template"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/sqltool"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"

	entmigrate "example.org/backend/ent/migrate"
)

// Dialects are the supported dialects, named as the migration directories.
var Dialects = []string{dialect.SQLite, dialect.Postgres}

// ErrNoPlan is returned by Diff when the directory produces exactly the
// Ent schema.
var ErrNoPlan = atlasmigrate.ErrNoPlan

// Formatter returns the golang-migrate formatter of Atlas (the same
// templates as sqltool.GolangMigrateFormatter) with a fixed version instead
// of the current time, so that one run gives every dialect the same version.
func Formatter(version string) atlasmigrate.Formatter {
	funcs := template.FuncMap{
		"now": func() string { return version },
		"rev": func(changes []*atlasmigrate.Change) []*atlasmigrate.Change {
			rev := make([]*atlasmigrate.Change, len(changes))
			for i, c := range changes {
				rev[len(changes)-1-i] = c
			}
			return rev
		},
	}
	tpls := []string{
		"{{ now }}{{ with .Name }}_{{ . }}{{ end }}.up.sql",
		`{{ range .Changes }}{{ with .Comment }}-- {{ println . }}{{ end }}{{ printf "%s;\n" .Cmd }}{{ end }}`,
		"{{ now }}{{ with .Name }}_{{ . }}{{ end }}.down.sql",
		`{{ range $c := rev .Changes }}{{ with $stmts := .ReverseStmts }}{{ with $c.Comment }}-- reverse: {{ println . }}{{ end }}{{ range $stmts }}{{ printf "%s;\n" . }}{{ end }}{{ end }}{{ end }}`,
	}
	parsed := make([]*template.Template, len(tpls))
	for i, t := range tpls {
		parsed[i] = template.Must(template.New("").Funcs(funcs).Parse(t))
	}
	f, err := atlasmigrate.NewTemplateFormatter(parsed...)
	if err != nil {
		panic(err) // static templates
	}
	return f
}

// Diff computes, in replay mode, the changes between what dir produces on
// the clean dev database db and the Ent schema. When they match it returns
// ErrNoPlan; otherwise it writes a migration named name (with the given
// version) into dir and returns nil.
//
// db must be an empty database of the given dialect ("sqlite3" with
// foreign keys on, or "postgres"). Migrations that Ent does not model
// (search tables, triggers) are replayed too; Ent only diffs its own tables
// and never drops a table, so they do not appear in the plan.
func Diff(ctx context.Context, db *sql.DB, dialectName string, dir atlasmigrate.Dir, name, version string) error {
	drv := entsql.OpenDB(dialectName, db)
	err := entmigrate.NewSchema(drv).NamedDiff(ctx, name,
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialectName),
		schema.WithFormatter(Formatter(version)),
		schema.WithDropColumn(true),
		schema.WithDropIndex(true),
		schema.WithErrNoPlan(true),
	)
	if err != nil && !errors.Is(err, ErrNoPlan) {
		return fmt.Errorf("diff %s schema: %w", dialectName, err)
	}
	return err
}

// LiveDiff compares, read-only, the live database db (already migrated)
// with the Ent schema: ErrNoPlan means they match. Tables Ent does not
// model (schema_migrations, search tables) are ignored.
func LiveDiff(ctx context.Context, db *sql.DB, dialectName string) (map[string]string, error) {
	dir := NewMemDir()
	err := entmigrate.NewSchema(entsql.OpenDB(dialectName, db)).NamedDiff(ctx, "live",
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeInspect),
		schema.WithDialect(dialectName),
		schema.WithFormatter(Formatter("0")),
		schema.WithDropColumn(true),
		schema.WithDropIndex(true),
		schema.WithErrNoPlan(true),
	)
	return dir.Written(), err
}

// Rehash recomputes and writes the atlas.sum of dir.
func Rehash(dir atlasmigrate.Dir) error {
	sum, err := dir.Checksum()
	if err != nil {
		return fmt.Errorf("checksum migration directory: %w", err)
	}
	if err := atlasmigrate.WriteSumFile(dir, sum); err != nil {
		return fmt.Errorf("write atlas.sum: %w", err)
	}
	return nil
}

// MemDir is an in-memory golang-migrate directory, loaded from an fs.FS
// (typically the embedded migrations). Files returns only the *.up.sql
// files (what a replay executes), while Checksum covers every *.sql file,
// exactly as sqltool.GolangMigrateDir over a local directory does, so that
// the committed atlas.sum validates against it. Written files stay in
// memory (see Written).
type MemDir struct {
	fs      fstest.MapFS
	written []string
}

// NewMemDir returns an empty MemDir.
func NewMemDir() *MemDir { return &MemDir{fs: fstest.MapFS{}} }

// LoadDir copies the files of directory sub of fsys into a MemDir.
func LoadDir(fsys fs.FS, sub string) (*MemDir, error) {
	d := NewMemDir()
	entries, err := fs.ReadDir(fsys, sub)
	if err != nil {
		return nil, fmt.Errorf("read migrations %s: %w", sub, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(sub, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		d.fs[e.Name()] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	return d, nil
}

// Open implements fs.FS.
func (d *MemDir) Open(name string) (fs.File, error) { return d.fs.Open(name) }

// WriteFile implements atlasmigrate.Dir; the file is kept in memory.
func (d *MemDir) WriteFile(name string, b []byte) error {
	d.fs[name] = &fstest.MapFile{Data: b, Mode: 0o644}
	d.written = append(d.written, name)
	return nil
}

// Written returns the contents of the files written since loading, by name.
func (d *MemDir) Written() map[string]string {
	out := map[string]string{}
	for _, n := range d.written {
		out[n] = string(d.fs[n].Data)
	}
	return out
}

// Files implements atlasmigrate.Dir: the up files, in version order.
func (d *MemDir) Files() ([]atlasmigrate.File, error) {
	var files []atlasmigrate.File
	for _, n := range d.sortedNames(".up.sql") {
		files = append(files, &sqltool.GolangMigrateFile{LocalFile: atlasmigrate.NewLocalFile(n, d.fs[n].Data)})
	}
	return files, nil
}

// Checksum implements atlasmigrate.Dir over every *.sql file (ups and downs).
func (d *MemDir) Checksum() (atlasmigrate.HashFile, error) {
	var files []atlasmigrate.File
	for _, n := range d.sortedNames(".sql") {
		files = append(files, atlasmigrate.NewLocalFile(n, d.fs[n].Data))
	}
	return atlasmigrate.NewHashFile(files)
}

func (d *MemDir) sortedNames(suffix string) []string {
	var names []string
	for n := range d.fs {
		if strings.HasSuffix(n, suffix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

var _ atlasmigrate.Dir = (*MemDir)(nil)
