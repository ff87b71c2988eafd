package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// holderInfo describes this process, for the other daemon's error message.
func holderInfo() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("pid %d on host %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
}

// lockFile takes an exclusive, non-blocking flock on path (created 0600)
// and records who holds it. The lock lives as long as the returned unlock
// is not called; the kernel drops it if the process dies.
func lockFile(path, dbPath string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "unknown process"
			}
			return nil, fmt.Errorf("%w: %s is locked by %s (lock file %s); stop that daemon or use another data directory",
				ErrLocked, dbPath, who, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(holderInfo()+"\n"), 0)
	}
	return func() error {
		// Leave the file in place: removing it would race with a daemon
		// that opened it before the removal and locks a deleted inode.
		_ = f.Truncate(0)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
			f.Close()
			return fmt.Errorf("unlock %s: %w", path, err)
		}
		return f.Close()
	}, nil
}

// pgLockKey is the advisory-lock key of "one daemon per database"
// ('bknd' 'dmn1'). Advisory locks are scoped to the current database.
const (
	pgLockHi = 0x626b6e64
	pgLockLo = 0x646d6e31
	// pgLockKey is pgLockHi<<32 | pgLockLo as PostgreSQL sees the bigint.
	pgLockKey = int64(pgLockHi)<<32 | int64(pgLockLo)
)

// lockPostgres takes a session-level pg_try_advisory_lock on a dedicated
// connection held open until unlock. The connection carries the holder's
// description as application_name, so a refused daemon can say who holds
// the lock.
func lockPostgres(ctx context.Context, dsn string) (unlock func() error, err error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	fail := func(err error) (func() error, error) {
		conn.Close()
		db.Close()
		return nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, pgLockKey).Scan(&ok); err != nil {
		return fail(fmt.Errorf("take database lock: %w", err))
	}
	if !ok {
		who := "an unknown session"
		var pid int
		var app, addr string
		var since time.Time
		err := conn.QueryRowContext(ctx, `
SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'unix socket or hidden'), a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1`,
			int64(pgLockHi), int64(pgLockLo)).Scan(&pid, &app, &addr, &since)
		if err == nil {
			who = fmt.Sprintf("%q (server pid %d, client %s, connected %s)", app, pid, addr, since.UTC().Format(time.RFC3339))
		}
		return fail(fmt.Errorf("%w: the database is locked by %s; stop that daemon or point this one to another database",
			ErrLocked, who))
	}
	app := "backend daemon " + holderInfo()
	if len(app) > 63 { // NAMEDATALEN-1
		app = app[:63]
	}
	if _, err := conn.ExecContext(ctx, `SELECT set_config('application_name', $1, false)`, app); err != nil {
		return fail(fmt.Errorf("name lock session: %w", err))
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, uerr := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, pgLockKey)
		cerr := conn.Close()
		derr := db.Close()
		return errors.Join(uerr, cerr, derr)
	}, nil
}
