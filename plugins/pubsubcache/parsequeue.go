package pubsubcache

import (
	"context"
	"errors"
	"sync"
	"time"

	"example.org/backend/core/analysers"
	"example.org/backend/ent/pubsubitem"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/xep0060/wire"
)

const (
	// parseBatch is how many items one Parse call gets.
	parseBatch = 100
	// maxHeld bounds the items the parse queue holds in memory; beyond it
	// a node's items are read back from the database, where they wait
	// with parse_state pending.
	maxHeld = 5000
	// parseTimeout bounds one Parse call (the plugin host has its own
	// call timeout; an in-process parser has none).
	parseTimeout = time.Minute
	// parseRetry is how long a worker waits after a failed batch when no
	// provider comes up meanwhile.
	parseRetry = 30 * time.Second
)

// parseQueue fills in the parsed data of stored items, outside the writer
// (a slow or hung parser never delays a notification): one worker per
// analyser, parseBatch items per Parse call, results stored by the writer
// (only for items still pending with the payload that was parsed). It owns
// the backlog: per analyser the nodes with items to parse and, for each,
// the items the writer handed over (held, at most maxHeld in all) or a
// mark to read them back from the database (scan). While a parser is down
// its items stay pending in the database; they are parsed when it is back
// (a rescan at every provider start, and every minute). mu guards the
// maps only.
type parseQueue struct {
	p *Plugin

	mu       sync.Mutex
	workers  map[string]*parseWorker
	held     int
	watchers map[int]chan struct{}
	// failing: node ids whose last batch failed (their parser crashed,
	// hung or is down); cleared by a stored batch.
	failing map[int]bool
}

// parseWorker is the backlog of one analyser, worked by one goroutine.
type parseWorker struct {
	analyser string
	order    []int // node ids, round robin
	nodes    map[int]*nodeWork
	wake     chan struct{}
}

// nodeWork is what waits to be parsed of one node.
type nodeWork struct {
	key   nodeKey
	id    int
	items []wire.Item
	// scan: read the node's pending items from the database, from row id
	// after on.
	scan  bool
	after int
}

func newParseQueue(p *Plugin) *parseQueue {
	q := &parseQueue{p: p, workers: map[string]*parseWorker{}, watchers: map[int]chan struct{}{}, failing: map[int]bool{}}
	return q
}

func (q *parseQueue) heldItems() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

// worker returns the analyser's worker, starting it. Under q.mu.
func (q *parseQueue) worker(analyser string) *parseWorker {
	w := q.workers[analyser]
	if w == nil {
		w = &parseWorker{analyser: analyser, nodes: map[int]*nodeWork{}, wake: make(chan struct{}, 1)}
		q.workers[analyser] = w
		q.p.wg.Add(1)
		go q.run(w)
	}
	return w
}

// work returns the node's backlog entry, adding it. Under q.mu.
func (w *parseWorker) work(k nodeKey, id int) *nodeWork {
	nw := w.nodes[id]
	if nw == nil {
		nw = &nodeWork{key: k, id: id}
		w.nodes[id] = nw
		w.order = append(w.order, id)
	}
	return nw
}

func (w *parseWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// add hands over items of node k (row id) stored parse pending.
func (q *parseQueue) add(k nodeKey, id int, analyser string, items []wire.Item) {
	if len(items) == 0 || analyser == "" || q.p.ctx.Err() != nil {
		return
	}
	q.mu.Lock()
	w := q.worker(analyser)
	nw := w.work(k, id)
	if !nw.scan && q.held+len(items) <= maxHeld {
		nw.items = append(nw.items, items...)
		q.held += len(items)
	} else {
		q.toScan(nw)
	}
	q.mu.Unlock()
	w.poke()
}

// scan makes the worker read the node's pending items from the database.
func (q *parseQueue) scan(k nodeKey, id int, analyser string) {
	if analyser == "" || q.p.ctx.Err() != nil {
		return
	}
	q.mu.Lock()
	w := q.worker(analyser)
	q.toScan(w.work(k, id))
	q.mu.Unlock()
	w.poke()
}

// toScan drops the held items of nw (they are pending in the database) and
// marks it to be read from there. Under q.mu.
func (q *parseQueue) toScan(nw *nodeWork) {
	q.held -= len(nw.items)
	nw.items = nil
	if !nw.scan {
		nw.scan, nw.after = true, 0
	}
}

// watch returns a channel closed the next time a batch of the node is
// stored or given up.
func (q *parseQueue) watch(id int) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := q.watchers[id]
	if ch == nil {
		ch = make(chan struct{})
		q.watchers[id] = ch
	}
	return ch
}

// isFailing reports whether the node's last batch failed.
func (q *parseQueue) isFailing(id int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failing[id]
}

// signal wakes the node's watchers after a batch (failed says how it
// went).
func (q *parseQueue) signal(id int, failed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if failed {
		q.failing[id] = true
	} else {
		delete(q.failing, id)
	}
	if ch := q.watchers[id]; ch != nil {
		close(ch)
		delete(q.watchers, id)
	}
}

// next takes the next batch of w: held items of the first node in line,
// or a node to read from the database (scanning). nw is nil when there is
// nothing to do.
func (q *parseQueue) next(w *parseWorker) (nw *nodeWork, batch []wire.Item, scanning bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(w.order) > 0 {
		id := w.order[0]
		w.order = w.order[1:]
		nw = w.nodes[id]
		switch {
		case nw == nil:
			continue
		case len(nw.items) > 0:
			n := min(len(nw.items), parseBatch)
			batch = nw.items[:n:n]
			nw.items = nw.items[n:]
			q.held -= n
		case nw.scan:
			scanning = true
		default:
			delete(w.nodes, id)
			continue
		}
		w.order = append(w.order, id) // round robin; dropped when empty
		return nw, batch, scanning
	}
	return nil, nil, false
}

// scanned records where a database read of nw stopped (done: nothing was
// left).
func (q *parseQueue) scanned(nw *nodeWork, after int, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nw.after = after
	if done {
		nw.scan, nw.after = false, 0
	}
}

// run is the worker of one analyser.
func (q *parseQueue) run(w *parseWorker) {
	p := q.p
	defer p.wg.Done()
	for {
		nw, batch, scanning := q.next(w)
		if nw == nil {
			select {
			case <-w.wake:
				continue
			case <-p.ctx.Done():
				return
			}
		}
		if scanning {
			items, after, err := p.store.pendingItems(p.ctx, nw.id, nw.after, parseBatch)
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				p.log.Warn("reading items to parse failed", "node", nw.key.node, "err", err)
				q.scanned(nw, nw.after, true)
				q.signal(nw.id, true)
				continue
			}
			q.scanned(nw, after, len(items) == 0)
			if len(items) == 0 {
				q.signal(nw.id, false)
				continue
			}
			batch = items
		}
		results, err := q.parseBatch(nw.key, w.analyser, batch)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			// The items stay pending: parsed when the provider is back (an
			// analyser no longer known has none: its items wait for a new
			// analysis of the node).
			q.mu.Lock()
			q.toScan(nw)
			nw.after = 0 // this batch too
			if errors.Is(err, analysers.ErrUnknownAnalyser) {
				delete(w.nodes, nw.id)
			}
			q.mu.Unlock()
			q.signal(nw.id, true)
			if !errors.Is(err, analysers.ErrProviderDown) {
				p.log.Warn("parse batch failed; items stay pending", "analyser", w.analyser, "items", len(batch), "err", err)
			}
			select {
			case <-p.analysers.providerUp():
			case <-time.After(parseRetry):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		id := nw.id
		err = p.w.run(p.ctx, func(ctx context.Context, t *wtx) error {
			_, err := p.store.storeParsed(ctx, t.c, id, results, p.analysers.indexedPaths(), p.index.item)
			return err
		})
		if err != nil && p.ctx.Err() == nil {
			p.log.Error("storing parse results failed; items stay pending", "node", nw.key.node, "err", err)
		}
		q.signal(nw.id, err != nil)
	}
}

// parseBatch parses items of node k with the analyser's parser.
func (q *parseQueue) parseBatch(k nodeKey, analyser string, items []wire.Item) ([]parsedItem, error) {
	p := q.p
	if p.analysers.r == nil {
		return nil, analysers.ErrProviderDown
	}
	req := sdk.ParseRequest{Profile: k.profile, Service: k.service, Node: k.node, Analyser: analyser, Items: make([]sdk.Item, len(items))}
	// On a PEP node where only its owner publishes, the owner published
	// every item, whether the service's answer says so or not (Prosody
	// puts no publisher on items answers): the parser is told.
	ownerOnly := false
	if n, ok := p.nodes.get(k); ok && isPEP(k.service) && n.publishModel == "publishers" {
		ownerOnly = true
	}
	for i, it := range items {
		req.Items[i] = sdk.Item{ID: it.ID, Publisher: it.Publisher, Payload: it.Payload}
		if ownerOnly && it.Publisher == "" {
			req.Items[i].Publisher = k.service
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, parseTimeout)
	defer cancel()
	res, err := p.analysers.r.Parse(ctx, req)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]sdk.ParseResult, len(res))
	for _, r := range res {
		byID[r.ID] = r
	}
	version := p.analysers.parserVersion(analyser)
	out := make([]parsedItem, len(items))
	for i, it := range items {
		out[i] = parsedItem{id: it.ID, payload: it.Payload, searchText: textOf(it.Payload), version: version}
		r, ok := byID[it.ID]
		switch {
		case !ok:
			out[i].state, out[i].err = pubsubitem.ParseStateError, "the parser returned no result for this item"
		case r.Err != nil:
			out[i].state, out[i].err = pubsubitem.ParseStateError, r.Err.Error()
		default:
			out[i].state, out[i].parsed = pubsubitem.ParseStateOk, r.JSON
			out[i].searchText = searchTextOf(out[i].searchText, r.SearchText)
		}
	}
	return out, nil
}

// rescan queues every node with items waiting for an available parser
// (at start, when a provider comes up, and every minute).
func (q *parseQueue) rescan() {
	p := q.p
	defer p.wg.Done()
	if p.analysers.r == nil {
		return
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		up := p.analysers.providerUp()
		ids, err := p.store.nodesWithPending(p.ctx)
		if err != nil && p.ctx.Err() == nil {
			p.log.Warn("listing items to parse failed", "err", err)
		}
		for _, id := range ids {
			if k, n, ok := p.nodes.byID(id); ok && n.parser && p.analysers.available(n.analyser) {
				q.scan(k, id, n.analyser)
			}
		}
		select {
		case <-up:
		case <-tick.C:
		case <-p.ctx.Done():
			return
		}
	}
}
