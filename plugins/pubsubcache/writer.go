package pubsubcache

import (
	"bytes"
	"context"
	"slices"
	"sync"

	"example.org/backend/plugins/xep0060/wire"
)

// opKind is a kind of write the writer applies.
type opKind int

const (
	opItems opKind = iota
	opPurgeItems
	opDeleteNode
	opConfig
	opSubGone
	// opFunc runs fn in the writer (sync pages: totally ordered with
	// notifications).
	opFunc
)

// op is one write coming from a notification or from the profile's own
// pubsub operations.
type op struct {
	kind      opKind
	key       nodeKey
	items     []wire.Item
	retracted []string
	// maxItemsSet (opConfig): the new configuration has pubsub#max_items,
	// maxItems (nil: unknown value).
	maxItemsSet bool
	maxItems    *int
	// refetched: items fetched by id because their notification did not
	// come (not evidence of where the service puts re-published items).
	refetched bool
	fn        func(ctx context.Context) error
	done      chan error
}

// writer applies notifications in arrival order, many per transaction, so
// that bursts are stored whole (no "database is locked" losses: one writer,
// and WithTx retries transient contention).
type writer struct {
	p    *Plugin
	mu   sync.Mutex
	ops  []op
	wake chan struct{}
	idle *sync.Cond
	busy bool
}

func newWriter(p *Plugin) *writer {
	w := &writer{p: p, wake: make(chan struct{}, 1)}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// maxBatch bounds the writes of one transaction.
const maxBatch = 1000

func (w *writer) enqueue(o op) {
	if o.kind == opItems {
		w.p.queue(o.key, 1)
	}
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// do enqueues o and waits until it is applied.
func (w *writer) do(ctx context.Context, o op) error {
	o.done = make(chan error, 1)
	w.enqueue(o)
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush waits until every queued write is applied (or ctx ends).
func (w *writer) flush(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		w.mu.Lock()
		for len(w.ops) > 0 || w.busy {
			w.idle.Wait()
		}
		w.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (w *writer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.busy = false
			w.idle.Broadcast()
			w.mu.Unlock()
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if len(w.ops) == 0 {
				w.busy = false
				w.idle.Broadcast()
				w.mu.Unlock()
				break
			}
			n := min(len(w.ops), maxBatch)
			batch := append([]op(nil), w.ops[:n]...)
			w.ops = append(w.ops[:0], w.ops[n:]...)
			w.busy = true
			w.mu.Unlock()
			w.apply(ctx, batch)
		}
	}
}

// apply runs a batch: consecutive item writes in one transaction, other
// writes one by one.
func (w *writer) apply(ctx context.Context, batch []op) {
	for len(batch) > 0 {
		i := 0
		for i < len(batch) && batch[i].kind == opItems {
			i++
		}
		if i > 0 {
			err := w.p.applyItems(ctx, batch[:i])
			if err != nil {
				w.p.log.Error("storing notified items failed", "ops", i, "err", err)
			}
			for _, o := range batch[:i] {
				w.p.queue(o.key, -1)
				if o.done != nil {
					o.done <- err
				}
			}
			batch = batch[i:]
			continue
		}
		o := batch[0]
		var err error
		if o.kind == opFunc {
			err = o.fn(ctx)
		} else {
			err = w.p.applyNodeOp(ctx, o)
		}
		if err != nil {
			w.p.log.Error("applying a node notification failed", "profile", o.key.profile, "service", o.key.service, "node", o.key.node, "err", err)
		}
		if o.done != nil {
			o.done <- err
		}
		batch = batch[1:]
	}
}

// repeats marks the item writes of a batch (applied in one transaction)
// that repeat the previous notification of the same node in that batch: a
// PEP service delivers each notification twice when the profile is both
// subscribed and interested (+notify). Applying the same write twice in a
// row, against the same state, changes nothing, so the repeat is skipped:
// no second write, no second lesson drawn about re-published items.
// Writes that are not notifications (refetched items, writes waited for)
// are never skipped and end a run.
func repeats(ops []op) []bool {
	skip := make([]bool, len(ops))
	last := map[nodeKey]int{} // index of the node's previous notification
	for i, o := range ops {
		if o.kind != opItems || o.refetched || o.done != nil {
			delete(last, o.key)
			continue
		}
		if prev, ok := last[o.key]; ok && sameWrite(ops[prev], o) {
			skip[i] = true
			continue
		}
		last[o.key] = i
	}
	return skip
}

// sameWrite reports whether a and b carry the same items (id, publisher,
// payload) and retractions.
func sameWrite(a, b op) bool {
	return slices.EqualFunc(a.items, b.items, func(x, y wire.Item) bool {
		return x.ID == y.ID && x.Publisher == y.Publisher && bytes.Equal(x.Payload, y.Payload)
	}) && slices.Equal(a.retracted, b.retracted)
}
