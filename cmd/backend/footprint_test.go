package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/storage"
	"example.org/backend/internal/mbcorpus"
	"example.org/backend/internal/testsvc"
)

// BenchmarkFootprint5000 is the storage and memory figure of issue 22
// (points 3 and 4): one profile on Prosody, 5 000 posts of the seeded
// corpus (internal/mbcorpus, ≈800-byte payloads) in its blog, synced into
// the cache with the microblog parser (a real plugin process), then 100
// reads. It reports the bytes per item on SQLite (`VACUUM INTO` size minus
// that of the same daemon's database before the posts, indexes and FTS
// included), the largest WAL seen during the sync, where the bytes go
// (payload, parsed JSON, search text: the sum of their lengths), and the
// RSS of the daemon plus the microblog plugin (sum of VmRSS, shipped
// defaults) after the reads. The microblog plugin runs from its own
// executable installed beside the daemon's (FOOTPRINT_REEXEC=1: from the
// daemon's binary re-executed); FOOTPRINT_MEMSTATS=1 logs the daemon's Go
// heap figures, FOOTPRINT_SMAPS=DIR writes both processes' smaps there,
// FOOTPRINT_SETTLE=DURATION measures the RSS again after that idle time;
// BACKEND_MEMORY_RETURN is handed to the daemon (0: no return of free
// memory after a sync, docs/operations.md "Memory").
//
//	go test -tags sqlite_fts5 -run '^$' -bench Footprint5000 -benchtime 1x ./cmd/backend/
func BenchmarkFootprint5000(b *testing.B) {
	srv := servers.Use(b, testsvc.KindProsody)
	// The daemon and its plugins run from the binary users run (this test
	// binary is larger and would count its own test code).
	exe := filepath.Join(b.TempDir(), "backend")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// The microblog plugin's own executable beside the daemon's, as
	// installed (the daemon runs it instead of re-executing itself);
	// FOOTPRINT_REEXEC=1 leaves it out, for a comparison.
	if os.Getenv("FOOTPRINT_REEXEC") == "" {
		cmd := exec.Command("go", "build", "-o", filepath.Join(filepath.Dir(exe), "backend-plugin-microblog"), "./plugins/microblog/cmd/backend-plugin-microblog")
		cmd.Dir = filepath.Join("..", "..", "plugin-sdk")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build backend-plugin-microblog: %v\n%s", err, out)
		}
	}
	daemonExe = exe
	b.Run("sqlite", func(b *testing.B) {
		for b.Loop() {
			footprint(b, srv, nil)
		}
	})
	b.Run("postgres", func(b *testing.B) {
		pg, err := testsvc.StartPostgres(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer pg.Stop()
		for b.Loop() {
			dsn, err := pg.NewDatabase(context.Background(), "footprint")
			if err != nil {
				b.Fatal(err)
			}
			footprint(b, srv, &dsn)
		}
	})
}

// daemonExe is the daemon binary BenchmarkFootprint5000 built.
var daemonExe string

// footprint runs one measure of BenchmarkFootprint5000, on SQLite or, with
// a DSN, on PostgreSQL (bytes per item: pg_database_size after VACUUM FULL,
// minus the same before the posts).
func footprint(b *testing.B, srv *testsvc.XMPPServer, pgDSN *string) {
	const n, node = 5000, "urn:xmpp:microblog:0"
	var e *env
	var size func() int64
	dbPath := ""
	if pgDSN != nil {
		e = pubsubEnv(b, srv, "BACKEND_TEST_EXE="+daemonExe, "BACKEND_DATABASE_DRIVER=postgres", "BACKEND_DATABASE_DSN="+*pgDSN)
		size = func() int64 { return pgSize(b, *pgDSN) }
	} else {
		vars := []string{"BACKEND_TEST_EXE=" + daemonExe}
		if v, ok := os.LookupEnv("BACKEND_MEMORY_RETURN"); ok {
			vars = append(vars, "BACKEND_MEMORY_RETURN="+v) // for a comparison
		}
		e = pubsubEnv(b, srv, vars...)
		dbPath = filepath.Join(e.dir, "data", "backend", "backend.db")
		if _, err := os.Stat(dbPath); err != nil {
			b.Fatalf("database: %v", err)
		}
		size = func() int64 { return vacuumedSize(b, dbPath) }
	}
	empty := size()
	daemonStart, _ := rss(b, e.daemon.Process.Pid)
	pluginStart, _ := rss(b, microblogPID(b, e))

	corpus := mbcorpus.Corpus{Seed: 22, Author: "alice@" + srv.Domain}
	publishCorpus(b, e, node, corpus, n)

	// The largest WAL while the node is synced.
	var walMax atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for dbPath != "" {
			if fi, err := os.Stat(dbPath + "-wal"); err == nil && fi.Size() > walMax.Load() {
				walMax.Store(fi.Size())
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	if out, errs, code := e.cli(b, "cache", "sync", "-p", "alice", "-n", node, "--wait", "-o", "json"); code != exitOK {
		b.Fatalf("cache sync: %d %s %s", code, out, errs)
	}
	close(stop)
	wg.Wait()
	for range 100 {
		out, errs, code := e.cli(b, "pubsub", "items", "-p", "alice", "-n", node, "-m", "20", "-o", "json")
		if code != exitOK {
			b.Fatalf("items: %d %s", code, errs)
		}
		if p := decode(b, out); p["from_cache"] != true {
			b.Fatalf("a read after the sync is not from the cache: %.200s", out)
		}
	}
	// An equality filter on a path nobody declared (title): the first
	// search asks for its expression index (point 5), counted in the size.
	title := corpus.Post(7).Title
	for i := 0; ; i++ {
		out, errs, code := e.cli(b, "cache", "search", "-o", "json", "-p", "alice", "-F", "title == "+strconv.Quote(title))
		if code != exitOK {
			b.Fatalf("cache search: %d %s", code, errs)
		}
		var res struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Items) == 0 {
			b.Fatalf("title search: %d items (%v): %.300s", len(res.Items), err, out)
		}
		if autoIndexes(b, dbPath, pgDSN) > 0 {
			break
		}
		if i == 100 {
			b.Fatal("no expression index for title after 100 searches")
		}
		time.Sleep(50 * time.Millisecond)
	}
	daemonRSS, _ := rss(b, e.daemon.Process.Pid)
	logMemstats(b, e.socket, "after the reads")
	pluginRSS, _ := rss(b, microblogPID(b, e))
	var db *sql.DB
	var err error
	if pgDSN != nil {
		db, err = sql.Open("pgx", *pgDSN)
	} else {
		db, err = sql.Open(storage.SQLiteFuncsDriver, "file:"+dbPath+"?mode=ro&_busy_timeout=5000")
	}
	if err != nil {
		b.Fatal(err)
	}
	var items int
	var payload, parsed, text sql.NullInt64
	// Stored bytes: on SQLite parsed is a packed blob (a text length would
	// stop at its first NUL); on PostgreSQL the JSON text of the jsonb.
	q := `SELECT count(*), sum(length(payload)), sum(length(CAST(parsed AS TEXT))), sum(length(search_text)) FROM pubsub_items`
	if pgDSN == nil {
		q = `SELECT count(*), sum(length(payload)), sum(length(CAST(parsed AS BLOB))), sum(length(search_text)) FROM pubsub_items`
	}
	if err := db.QueryRow(q).Scan(&items, &payload, &parsed, &text); err != nil {
		b.Fatal(err)
	}
	db.Close()
	if items != n {
		b.Fatalf("%d items cached, want %d", items, n)
	}
	full := size()
	if keep := os.Getenv("FOOTPRINT_KEEP"); keep != "" && dbPath != "" {
		// For a look at where the bytes go: sqlite3 FILE "SELECT name,
		// sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC".
		vacuumInto(b, dbPath, keep)
	}
	b.ReportMetric(float64(full-empty)/n, "bytes/item")
	b.ReportMetric(float64(payload.Int64)/n, "payload-bytes/item")
	b.ReportMetric(float64(parsed.Int64)/n, "parsed-bytes/item")
	b.ReportMetric(float64(text.Int64)/n, "search-text-bytes/item")
	if dbPath != "" {
		b.ReportMetric(float64(walMax.Load())/(1<<20), "wal-max-MiB")
		if fi, err := os.Stat(dbPath + "-wal"); err == nil {
			b.ReportMetric(float64(fi.Size())/(1<<20), "wal-after-MiB")
		}
	}
	if dir := os.Getenv("FOOTPRINT_SMAPS"); dir != "" {
		// The processes' mappings, for a look at where the memory goes.
		for name, pid := range map[string]int{"daemon": e.daemon.Process.Pid, "microblog": microblogPID(b, e)} {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
				os.WriteFile(filepath.Join(dir, name+".smaps"), data, 0o600)
			}
		}
	}
	// Where it goes: private memory (anonymous: Go heap, SQLite page
	// cache, stacks) and the executables' pages (shared by the daemon and
	// the plugin processes that re-execute it; VmRSS counts them in each).
	da, dp := smaps(b, e.daemon.Process.Pid)
	pa, pp := smaps(b, microblogPID(b, e))
	b.ReportMetric(float64(da)/(1<<20), "daemon-anon-MiB")
	b.ReportMetric(float64(pa)/(1<<20), "microblog-anon-MiB")
	b.ReportMetric(float64(dp+pp)/(1<<20), "pss-MiB")
	b.ReportMetric(float64(daemonRSS)/(1<<20), "daemon-MiB")
	b.ReportMetric(float64(pluginRSS)/(1<<20), "microblog-MiB")
	b.ReportMetric(float64(daemonRSS+pluginRSS)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(daemonStart+pluginStart)/(1<<20), "rss-start-MiB")
	b.ReportMetric(float64(daemonStart)/(1<<20), "daemon-start-MiB")
	if v := os.Getenv("FOOTPRINT_SETTLE"); v != "" {
		// The same once the daemon has been idle that long (its idle
		// database connections close after a minute: 75s).
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("FOOTPRINT_SETTLE: %v", err)
		}
		time.Sleep(d)
		daemonRSS, _ = rss(b, e.daemon.Process.Pid)
		logMemstats(b, e.socket, "settled")
		pluginRSS, _ = rss(b, microblogPID(b, e))
		da, _ = smaps(b, e.daemon.Process.Pid)
		b.ReportMetric(float64(da)/(1<<20), "daemon-anon-settled-MiB")
		b.ReportMetric(float64(daemonRSS)/(1<<20), "daemon-settled-MiB")
		b.ReportMetric(float64(pluginRSS)/(1<<20), "microblog-settled-MiB")
		b.ReportMetric(float64(daemonRSS+pluginRSS)/(1<<20), "rss-settled-MiB")
	}
}

// logMemstats logs the daemon's Go memory figures (heap, stacks, runtime
// metadata: to tell them from SQLite's and the C allocator's memory) when
// FOOTPRINT_MEMSTATS is set.
func logMemstats(b *testing.B, socket, when string) {
	if os.Getenv("FOOTPRINT_MEMSTATS") == "" {
		return
	}
	resp, err := unixHTTP(socket).Get("http://backend/metrics")
	if err != nil {
		b.Logf("metrics: %v", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		for _, prefix := range []string{"go_memstats_heap", "go_memstats_sys", "go_memstats_stack", "go_memstats_mspan_sys", "go_memstats_gc_sys", "go_memstats_other_sys", "go_goroutines"} {
			if strings.HasPrefix(l, prefix) {
				b.Log(when + ": " + l)
			}
		}
	}
}

// autoIndexes counts the search's expression indexes (pubsub_items_px_*).
func autoIndexes(tb testing.TB, dbPath string, pgDSN *string) int {
	tb.Helper()
	var db *sql.DB
	var err error
	q := `SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'pubsub_items_px_%'`
	if pgDSN != nil {
		db, err = sql.Open("pgx", *pgDSN)
		q = `SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'pubsub_items_px_%'`
	} else {
		db, err = sql.Open(storage.SQLiteFuncsDriver, "file:"+dbPath+"?mode=ro&_busy_timeout=5000")
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// smaps returns the anonymous memory and the proportional set size (Pss:
// shared pages divided among the processes sharing them) of pid, in bytes.
func smaps(tb testing.TB, pid int) (anon, pss int64) {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Anonymous:":
			anon = n << 10
		case "Pss:":
			pss = n << 10
		}
	}
	return anon, pss
}

// microblogPID is the process id of the microblog plugin.
func microblogPID(tb testing.TB, e *env) int {
	tb.Helper()
	var l pluginsList
	out, _, _ := e.cli(tb, "plugins", "list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		tb.Fatal(err)
	}
	for _, p := range l.Plugins {
		if p.Name == "microblog" && p.PID != nil {
			return int(*p.PID)
		}
	}
	tb.Fatal("no microblog plugin process")
	return 0
}

// pgSize is the size of the PostgreSQL database at dsn after VACUUM FULL.
func pgSize(tb testing.TB, dsn string) int64 {
	tb.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM FULL`); err != nil {
		tb.Fatalf("vacuum full: %v", err)
	}
	var size int64
	if err := db.QueryRow(`SELECT pg_database_size(current_database())`).Scan(&size); err != nil {
		tb.Fatal(err)
	}
	return size
}

// publishCorpus publishes posts 0..n-1 of c on node through the API, eight
// at a time, in a node that keeps them all.
func publishCorpus(tb testing.TB, e *env, node string, c mbcorpus.Corpus, n int) {
	tb.Helper()
	api := backendv1connect.NewPubSubServiceClient(unixHTTP(e.socket), "http://backend")
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				p := c.Post(i)
				_, err := api.Publish(context.Background(), connect.NewRequest(&backendv1.PubSubPublishRequest{Profile: "alice", Node: node,
					Id: p.ID, Payload: []byte(p.Payload), Options: []*backendv1.PubSubOption{{Var: "pubsub#max_items", Value: "max"}}}))
				if err != nil {
					failed.Store(fmt.Errorf("publish %d: %w", i, err))
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatal(err)
	}
}

// vacuumedSize is the size of a `VACUUM INTO` copy of the SQLite database
// at path.
func vacuumedSize(tb testing.TB, path string) int64 {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "vacuumed.db")
	vacuumInto(tb, path, out)
	fi, err := os.Stat(out)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// vacuumInto writes a `VACUUM INTO` copy of the SQLite database at path to
// out (which must not exist).
func vacuumInto(tb testing.TB, path, out string) {
	tb.Helper()
	db, err := sql.Open(storage.SQLiteFuncsDriver, "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM INTO ?`, out); err != nil {
		tb.Fatalf("vacuum into: %v", err)
	}
}
