package search

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
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

// parsedColumn is the parsed column of an item whose parsed JSON is m and
// payload payload, as the cache stores it on s's engine (packed with the
// payload on SQLite when that saves bytes; canonical JSON otherwise).
func parsedColumn(s *storage.Store, m map[string]any, payload []byte) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	if s.Dialect == storage.DriverSQLite {
		return payloadcodec.PackParsed(b, payload)
	}
	return b
}

// payloadWith is an Atom entry holding the text of parsed JSON m, so that
// parsedColumn packs m on SQLite (as the cache does for real parsers'
// output, whose strings come from the payload).
func payloadWith(title string, m map[string]any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;")
	return []byte("<entry xmlns='http://www.w3.org/2005/Atom'><title>" + esc.Replace(title) + "</title><content>" + esc.Replace(string(b)) + "</content></entry>")
}
