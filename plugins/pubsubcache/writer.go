package pubsubcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"example.org/backend/ent"
	"example.org/backend/plugins/xep0060/wire"
)

// writer is the one owner of node state and the only writer of cached
// items: one goroutine applies, in arrival order, item notifications (many
// per transaction, so that bursts are stored whole), node notifications,
// sync pages, parse results and every transition of a node's state
// (state.go's apply, through wtx.transition). It never waits for the
// network or a parser: what it stores raw is parsed by the parse queue.
//
// Its lock guards the queue (ops, queued, busy) only, never held across
// I/O.
type writer struct {
	p *Plugin

	mu  sync.Mutex
	ops []op
	// queued counts the writes of each node waiting in ops (its item
	// writes, and the writes of one node: a notified purge, deletion,
	// configuration, subscription end…): while there are some, the node
	// is not answered from the cache (the answer would miss what the
	// service already notified).
	queued map[nodeKey]int
	// drained are closed when the queued writes of their node are all
	// applied (waitDrained).
	drained map[nodeKey]chan struct{}
	busy    bool
	wake    chan struct{}
	idle    *sync.Cond
}

func newWriter(p *Plugin) *writer {
	w := &writer{p: p, queued: map[nodeKey]int{}, drained: map[nodeKey]chan struct{}{}, wake: make(chan struct{}, 1)}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// maxBatch bounds the writes of one transaction.
const maxBatch = 1000

// opKind is a kind of write.
type opKind int

const (
	// opItems: item notifications (published and retracted items), the
	// profile's own retractions and items refetched by id; consecutive
	// ones share a transaction.
	opItems opKind = iota
	// opFunc: fn runs in the writer, in a transaction of its own.
	opFunc
)

// op is one write.
type op struct {
	kind opKind
	key  nodeKey
	// opItems
	items     []wire.Item
	texts     []string // search text of each item (computed before queueing)
	retracted []string
	// refetched: items fetched by id because their notification did not
	// come (not evidence of where the service puts re-published items).
	refetched bool
	// arrived: the node's count of notified items after these
	// (learner.itemsArrived; 0: not notified).
	arrived uint64
	// opFunc
	fn   func(ctx context.Context, t *wtx) error
	done chan error
}

// itemsOp returns the write of notified (or refetched) items.
func itemsOp(k nodeKey, items []wire.Item, retracted []string, refetched bool) op {
	texts := make([]string, len(items))
	for i, it := range items {
		texts[i] = textOf(it.Payload)
	}
	return op{kind: opItems, key: k, items: items, texts: texts, retracted: retracted, refetched: refetched}
}

func (w *writer) enqueue(o op) {
	w.mu.Lock()
	if o.counted() {
		w.queued[o.key]++
	}
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

// run runs fn in the writer (in a transaction of its own) and waits.
func (w *writer) run(ctx context.Context, fn func(ctx context.Context, t *wtx) error) error {
	return w.do(ctx, op{kind: opFunc, fn: fn})
}

// counted reports whether o is a write of one node, counted in queued
// while it waits.
func (o op) counted() bool { return o.kind == opItems || o.key != (nodeKey{}) }

// applied: the writes ops (of one batch) are applied, or failed; the
// nodes whose writes are all applied may be answered from the cache again.
func (w *writer) applied(ops []op) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range ops {
		if !o.counted() {
			continue
		}
		if w.queued[o.key]--; w.queued[o.key] <= 0 {
			delete(w.queued, o.key)
			if ch := w.drained[o.key]; ch != nil {
				close(ch)
				delete(w.drained, o.key)
			}
		}
	}
}

// hasQueued reports whether writes of k wait in the queue.
func (w *writer) hasQueued(k nodeKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued[k] > 0
}

// waitDrained waits, at most max, until the writes of k queued now
// are applied; it reports whether they are.
func (w *writer) waitDrained(ctx context.Context, k nodeKey, max time.Duration) bool {
	w.mu.Lock()
	if w.queued[k] == 0 {
		w.mu.Unlock()
		return true
	}
	ch := w.drained[k]
	if ch == nil {
		ch = make(chan struct{})
		w.drained[k] = ch
	}
	w.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// depth is the number of writes waiting.
func (w *writer) depth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ops)
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

// loop is the writer's goroutine.
func (w *writer) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.busy = false
			for _, o := range w.ops {
				if o.done != nil {
					o.done <- errors.New("pubsub cache is stopped")
				}
			}
			w.ops = nil
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
			batch := slices.Clone(w.ops[:n])
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
			items := batch[:i]
			err := w.inTx(ctx, func(ctx context.Context, t *wtx) error { return w.p.applyItems(ctx, t, items) })
			if err != nil {
				// What the service holds is not what is stored: the nodes go
				// to the network until reconciled, before their queued
				// count drops (the node is never answered from the cache
				// in between).
				w.p.log.Error("storing notified items failed; the nodes are not fresh until reconciled", "ops", i, "err", err)
				seen := map[nodeKey]bool{}
				for _, o := range items {
					if !seen[o.key] {
						seen[o.key] = true
						w.notFresh(ctx, o.key)
					}
				}
			}
			w.applied(items)
			for _, o := range items {
				if o.done != nil {
					o.done <- err
				}
			}
			batch = batch[i:]
			continue
		}
		o := batch[0]
		err := w.inTx(ctx, o.fn)
		if err != nil {
			w.p.log.Error("a cache write failed", "profile", o.key.profile, "service", o.key.service, "node", o.key.node, "err", err)
			if o.key != (nodeKey{}) {
				// A change of the node (notified, or the profile's own
				// purge, deletion, configuration…) not stored: as for
				// items, the node is not fresh.
				w.notFresh(ctx, o.key)
			}
		}
		w.applied(batch[:1])
		if o.done != nil {
			o.done <- err
		}
		batch = batch[1:]
	}
}

// notFresh marks k not fresh after a write of it failed (what the service
// holds is not what is stored): it goes to the network until reconciled,
// and a listing running does not make it fresh either.
func (w *writer) notFresh(ctx context.Context, k nodeKey) {
	if j := w.p.sync.running(k); j != nil {
		j.markLost()
	}
	if err := w.inTx(ctx, w.p.transitionOf(k, event{kind: evNotFresh}, false)); err != nil {
		w.p.log.Error("marking a node not fresh failed", "node", k.node, "err", err)
	}
}

// inTx runs fn in a transaction (retried on transient contention); once it
// committed, the node state changes fn made are published and its
// afterwards functions run; for each attempt that did not commit, its
// unlessCommitted functions run.
func (w *writer) inTx(ctx context.Context, fn func(ctx context.Context, t *wtx) error) error {
	var t *wtx
	err := w.p.store.db.WithTx(ctx, func(tx *ent.Tx) error {
		if t != nil {
			t.abandon() // the previous attempt was rolled back
		}
		t = &wtx{p: w.p, c: tx.Client(), changes: map[nodeKey]*nodeInfo{}}
		return fn(ctx, t)
	})
	if err != nil {
		if t != nil {
			t.abandon()
		}
		return err
	}
	w.p.nodes.publish(t.changes)
	for _, f := range t.after {
		f()
	}
	return nil
}

// wtx is one writer transaction: the database client of the transaction,
// the node state changes to publish once it commits and what to do then.
// Only the writer makes one.
type wtx struct {
	p       *Plugin
	c       *ent.Client
	changes map[nodeKey]*nodeInfo
	after   []func()
	undo    []func()
}

// node returns the node's state as this transaction sees it.
func (t *wtx) node(k nodeKey) (nodeInfo, bool) {
	if n, ok := t.changes[k]; ok {
		if n == nil {
			return nodeInfo{}, false
		}
		return *n, true
	}
	return t.p.nodes.get(k)
}

// ensure returns the node, creating its row (state never) when missing.
func (t *wtx) ensure(ctx context.Context, k nodeKey) (nodeInfo, error) {
	if n, ok := t.node(k); ok {
		return n, nil
	}
	pid, err := t.p.store.profileID(ctx, k.profile)
	if err != nil {
		return nodeInfo{}, err
	}
	n, err := t.p.store.createNode(ctx, t.c, pid, k.service, k.node)
	if err != nil {
		return nodeInfo{}, err
	}
	t.changes[k] = &n
	return n, nil
}

// transition applies e to the node (ok false: it has no row), writes the
// row and stages the change.
func (t *wtx) transition(ctx context.Context, k nodeKey, e event) (nodeInfo, bool, error) {
	n, ok := t.node(k)
	if !ok {
		return nodeInfo{}, false, nil
	}
	next := apply(n, e, time.Now())
	if next == n {
		return n, true, nil
	}
	if err := t.p.store.saveNode(ctx, t.c, next, next.state != n.state); err != nil {
		return n, true, err
	}
	t.changes[k] = &next
	return next, true, nil
}

// remove deletes the node's row (its items go with it).
func (t *wtx) remove(ctx context.Context, k nodeKey) error {
	n, ok := t.node(k)
	if !ok {
		return nil
	}
	if err := t.p.store.deleteNode(ctx, t.c, n.id); err != nil {
		return err
	}
	t.changes[k] = nil
	return nil
}

// afterwards runs f once the transaction committed.
func (t *wtx) afterwards(f func()) { t.after = append(t.after, f) }

// unlessCommitted runs f if this attempt of the transaction does not
// commit (rolled back, or retried): it undoes what was done in memory
// ahead of the commit.
func (t *wtx) unlessCommitted(f func()) { t.undo = append(t.undo, f) }

// abandon runs the unlessCommitted functions of an attempt that did not
// commit.
func (t *wtx) abandon() {
	for _, f := range t.undo {
		f()
	}
	t.undo = nil
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

// loadNodes loads every node row into the table, applying evRestarted
// (nothing is fresh after a start; a sync that was running is gone) in
// one transaction. It runs before the writer's goroutine starts, which
// owns the table from then on. It returns how many nodes have a sync to
// resume.
func (w *writer) loadNodes(ctx context.Context) (int, error) {
	m := map[nodeKey]nodeInfo{}
	err := w.p.store.db.WithTx(ctx, func(tx *ent.Tx) error {
		m = map[nodeKey]nodeInfo{}
		rows, err := w.p.store.loadNodes(ctx, tx.Client())
		if err != nil {
			return err
		}
		now := time.Now()
		for _, r := range rows {
			n := r.n
			n.toSync, n.parser = w.p.analysers.declared(n.analyser)
			next := apply(n, event{kind: evRestarted}, now)
			if next != n {
				if err := w.p.store.saveNode(ctx, tx.Client(), next, next.state != n.state); err != nil {
					return err
				}
			}
			m[r.key] = next
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("load cached nodes: %w", err)
	}
	w.p.nodes.replace(m)
	resume := 0
	for _, n := range m {
		if n.resume {
			resume++
		}
	}
	return resume, nil
}
