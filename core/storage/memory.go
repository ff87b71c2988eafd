package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ReleaseMemory gives back memory the database layer holds and does not
// need: on SQLite, every idle connection of the pool frees its page cache
// (PRAGMA shrink_memory: up to sqliteCacheKiB per connection, filled
// by what it last read or wrote), then the C allocator returns its free
// pages to the OS (trimCHeap: glibc keeps what SQLite frees in its arenas,
// 21 of 42 MiB after the footprint benchmark's sync). It is meant for the
// end of a burst such as a large sync: later queries fill the caches again
// from the OS's file cache. On PostgreSQL it does nothing.
func (s *Store) ReleaseMemory(ctx context.Context) error {
	if s.Dialect != DriverSQLite {
		return nil
	}
	// Hold each connection taken so that the next Conn takes another idle
	// one; a connection busy elsewhere keeps its cache.
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var errs []error
	for range s.DB.Stats().Idle {
		c, err := s.DB.Conn(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("release memory: %w", err))
			break
		}
		conns = append(conns, c)
		if _, err := c.ExecContext(ctx, "PRAGMA shrink_memory"); err != nil {
			errs = append(errs, fmt.Errorf("release memory: shrink: %w", err))
		}
	}
	trimCHeap()
	return errors.Join(errs...)
}

// CloseIdle closes the pool's idle connections at once, as the pool does
// by itself after sqliteIdleTime: their page caches are freed and their
// mappings of the database file undone (the pages a connection read
// through its mapping count in the daemon's VmRSS until then: ≈ 12 MiB
// after the footprint benchmark's sync, title index and reads). The next
// query opens a connection again (≈ 1 ms; the pages come from the OS's
// file cache). It is meant for a daemon that has been quiet for a while;
// on PostgreSQL it does nothing.
func (s *Store) CloseIdle() {
	if s.Dialect != DriverSQLite {
		return
	}
	s.DB.SetMaxIdleConns(0)
	s.DB.SetMaxIdleConns(sqliteMaxIdle)
}

// IdleClosed is how many connections the pool has closed so far for
// being idle longer than sqliteIdleTime (their page caches freed; the C
// allocator keeps the pages until TrimCHeap).
func (s *Store) IdleClosed() int64 { return s.DB.Stats().MaxIdleTimeClosed }

// TrimCHeap returns the C allocator's free pages to the OS (glibc's
// malloc_trim; nothing where the C library has none).
func TrimCHeap() { trimCHeap() }
