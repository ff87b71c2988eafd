package storage

import (
	"context"
	"database/sql"
	"testing"
)

// TestReleaseMemory: the pool's idle connections shrink their page caches
// and stay usable; the pool keeps its idle connections.
func TestReleaseMemory(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		s := openStore(t, e.config(t))
		twoIdle(t, s)
		idle := s.DB.Stats().Idle
		if err := s.ReleaseMemory(ctx); err != nil {
			t.Fatalf("ReleaseMemory: %v", err)
		}
		if got := s.DB.Stats().Idle; got != idle {
			t.Errorf("%d idle connections after ReleaseMemory, want %d", got, idle)
		}
		if n, err := s.Client.Profile.Query().Count(ctx); err != nil || n != 0 {
			t.Fatalf("query after ReleaseMemory: %d, %v", n, err)
		}
		if s.IdleClosed() != 0 {
			t.Errorf("IdleClosed = %d, want 0", s.IdleClosed())
		}
		TrimCHeap()
	})
}

// twoIdle leaves two idle connections in the pool, each having read the
// schema.
func twoIdle(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	c1, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*sql.Conn{c1, c2} {
		if _, err := c.ExecContext(ctx, "SELECT count(*) FROM profiles"); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestCloseIdle: on SQLite the pool's idle connections are closed at once
// (their caches and mappings go), and the pool serves queries after.
func TestCloseIdle(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{DataDir: t.TempDir()})
	twoIdle(t, s)
	if got := s.DB.Stats().Idle; got != 2 {
		t.Fatalf("%d idle connections before CloseIdle, want 2", got)
	}
	s.CloseIdle()
	if got := s.DB.Stats().Idle; got != 0 {
		t.Errorf("%d idle connections after CloseIdle, want 0", got)
	}
	for range 3 {
		if n, err := s.Client.Profile.Query().Count(ctx); err != nil || n != 0 {
			t.Fatalf("query after CloseIdle: %d, %v", n, err)
		}
	}
	if got := s.DB.Stats().Idle; got != 1 {
		t.Errorf("%d idle connections after a query, want 1 (the pool keeps idle connections again)", got)
	}
}

// TestSQLiteMemorySettings: every connection of the SQLite pool reads
// through a memory mapping and has a small page cache.
func TestSQLiteMemorySettings(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{DataDir: t.TempDir()})
	c, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mmap, cache int64
	if err := c.QueryRowContext(ctx, "PRAGMA mmap_size").Scan(&mmap); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache); err != nil {
		t.Fatal(err)
	}
	if mmap < 1<<30 { // SQLite caps it just below 2 GiB
		t.Errorf("mmap_size = %d, want about %d", mmap, sqliteMmapBytes)
	}
	if cache != -sqliteCacheKiB {
		t.Errorf("cache_size = %d, want %d", cache, -sqliteCacheKiB)
	}
}
