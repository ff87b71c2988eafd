package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"example.org/backend/ent"
)

// maxTxAttempts bounds WithTx retries of transient failures.
const maxTxAttempts = 8

// WithTx runs fn in a write transaction and commits it, or rolls it back
// when fn returns an error or panics. Transient failures (SQLITE_BUSY /
// SQLITE_LOCKED beyond the busy timeout; PostgreSQL serialization failures
// and deadlocks) are retried with a short back-off, so fn may run more
// than once and must not have effects outside the transaction.
func (s *Store) WithTx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.runTx(ctx, fn)
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		s.log.Debug("transaction retried", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

func (s *Store) runTx(ctx context.Context, fn func(tx *ent.Tx) error) (err error) {
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// retryable reports transient database contention errors.
func retryable(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}
