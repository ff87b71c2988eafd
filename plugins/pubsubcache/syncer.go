package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// maxRounds bounds the whole listings of one sync: a listing during which
// an item was re-published is followed by another one, which settles its
// place.
const maxRounds = 3

// syncer runs node syncs. It owns the running jobs (one per node), the
// per-profile sync slots (cache.sync_concurrency), the nodes whose
// notifications it asked PEP services for (+notify) and the syncs the last
// stop interrupted (restarted when their profile connects). Its lock
// guards those maps only.
type syncer struct {
	p *Plugin

	mu       sync.Mutex
	jobs     map[nodeKey]*SyncJob
	sems     map[string]chan struct{}
	notified map[string]bool
	resume   map[nodeKey]bool
}

func newSyncer(p *Plugin) *syncer {
	return &syncer{p: p, jobs: map[nodeKey]*SyncJob{}, sems: map[string]chan struct{}{}, notified: map[string]bool{}, resume: map[nodeKey]bool{}}
}

// Progress is the progress of a sync.
type Progress struct {
	Profile, Service, Node string
	State                  State
	Fresh                  bool
	// Items is how many items are stored so far; Total the node's size
	// when the service told it (-1 otherwise; the stored count once done).
	Items, Total int
	// ParsePending is how many items of the node wait for their parser
	// (once the listing is done).
	ParsePending int
	Err          string
	Done         bool
}

// SyncJob is one sync of a node, until the node is usable: whole listings
// (a second one when an item was re-published during the first), then
// every item parsed, or the parser found down. A second request for the
// same node joins it.
type SyncJob struct {
	key  nodeKey
	done chan struct{}
	err  error

	mu       sync.Mutex
	progress Progress
	watchers map[chan Progress]struct{}
	// touched are item ids notifications changed during the current
	// listing: their stored state is newer than what the pages bring.
	touched map[string]bool
	// updated says an item was re-published during the current listing:
	// its place may be the old one; another listing settles it.
	updated bool
}

func (j *SyncJob) markUpdated() {
	j.mu.Lock()
	j.updated = true
	j.mu.Unlock()
}

// startRound forgets what the previous listing saw.
func (j *SyncJob) startRound() {
	j.mu.Lock()
	j.updated = false
	clear(j.touched)
	j.mu.Unlock()
}

func (j *SyncJob) hadUpdates() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.updated
}

// Done is closed when the sync ended; Err is its outcome.
func (j *SyncJob) Done() <-chan struct{} { return j.done }

// Err is the sync's error once Done is closed.
func (j *SyncJob) Err() error { return j.err }

// Watch returns a channel of progress updates (the latest one first) and
// its cancel function.
func (j *SyncJob) Watch() (<-chan Progress, func()) {
	ch := make(chan Progress, 64)
	j.mu.Lock()
	ch <- j.progress
	j.watchers[ch] = struct{}{}
	j.mu.Unlock()
	return ch, func() {
		j.mu.Lock()
		delete(j.watchers, ch)
		j.mu.Unlock()
	}
}

// Progress returns the latest progress.
func (j *SyncJob) Progress() Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.progress
}

func (j *SyncJob) report(pr Progress) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.progress = pr
	for ch := range j.watchers {
		select {
		case ch <- pr:
		default: // a slow watcher misses intermediate updates
		}
	}
}

func (j *SyncJob) touch(ids ...string) {
	j.mu.Lock()
	for _, id := range ids {
		j.touched[id] = true
	}
	j.mu.Unlock()
}

func (j *SyncJob) isTouched(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.touched[id]
}

func (j *SyncJob) touchedIDs() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.touched))
	for id := range j.touched {
		out = append(out, id)
	}
	return out
}

// running returns the sync running for k, if any.
func (s *syncer) running(k nodeKey) *SyncJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[k]
}

// launch starts a background sync of k, or returns the one running.
func (s *syncer) launch(k nodeKey, manual bool) *SyncJob {
	p := s.p
	s.mu.Lock()
	if j := s.jobs[k]; j != nil {
		s.mu.Unlock()
		return j
	}
	j := &SyncJob{key: k, done: make(chan struct{}), watchers: map[chan Progress]struct{}{}, touched: map[string]bool{},
		progress: Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1}}
	if p.ctx == nil || p.ctx.Err() != nil {
		s.mu.Unlock()
		j.err = errors.New("pubsub cache is stopped")
		close(j.done)
		return j
	}
	delete(s.resume, k)
	s.jobs[k] = j
	p.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer p.wg.Done()
		err := s.run(p.ctx, j, manual)
		s.mu.Lock()
		delete(s.jobs, k)
		s.mu.Unlock()
		j.err = err
		close(j.done)
	}()
	return j
}

// semaphore returns the profile's sync slots (cache.sync_concurrency).
func (s *syncer) semaphore(ctx context.Context, profileName string) chan struct{} {
	size := s.p.params.of(ctx, profileName).concurrency
	s.mu.Lock()
	defer s.mu.Unlock()
	sem := s.sems[profileName]
	if sem == nil || cap(sem) != size {
		sem = make(chan struct{}, size)
		s.sems[profileName] = sem
	}
	return sem
}

// wantNotify asks PEP services for notifications of node (+notify in caps).
func (s *syncer) wantNotify(node string) {
	s.mu.Lock()
	first := !s.notified[node]
	s.notified[node] = true
	s.mu.Unlock()
	if first {
		s.p.c.WantNotify(node)
	}
}

// interrupted records syncs the last stop interrupted.
func (s *syncer) interrupted(keys []nodeKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.resume[k] = true
	}
}

// takeResume returns (and forgets) the interrupted syncs of a profile.
func (s *syncer) takeResume(profileName string) []nodeKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nodeKey
	for k := range s.resume {
		if k.profile == profileName {
			out = append(out, k)
			delete(s.resume, k)
		}
	}
	return out
}

// run syncs the node until it is usable: listings (maxRounds at most),
// then the parse of its items.
func (s *syncer) run(ctx context.Context, j *SyncJob, manual bool) (err error) {
	p := s.p
	k := j.key
	sem := s.semaphore(ctx, k.profile)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	start := time.Now()
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	var out listing
	defer func() {
		pr := j.Progress()
		pr.Done = true
		if err != nil {
			pr.State, pr.Err = StateError, err.Error()
			var failed nodeInfo
			ferr := p.w.run(context.WithoutCancel(ctx), func(ctx context.Context, t *wtx) error {
				var terr error
				failed, _, terr = t.transition(ctx, k, event{kind: evSyncFailed, err: err.Error()})
				return terr
			})
			if ferr == nil {
				pr.State = failed.state
			}
			p.log.Warn("node sync failed", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		}
		j.report(pr)
		p.syncEvent(pr)
	}()
	for round := 1; ; round++ {
		if out, err = s.listing(ctx, j); err != nil {
			return err
		}
		if !out.updated || out.partial || round == maxRounds {
			break
		}
		// An item was re-published (or re-sent elsewhere than at the end)
		// during the listing: its place is settled by one more. Not for a
		// partial node: it is not served from the cache, and the same limit
		// would stop the next listing again.
		p.log.Info("item re-published during a sync: listing the node again", "profile", k.profile, "service", k.service, "node", k.node, "round", round+1)
	}
	release() // parsing does not hold a sync slot
	n, _ := p.nodes.get(k)
	pending := s.waitParsed(ctx, j, n, out)
	pr := Progress{Profile: k.profile, Service: k.service, Node: k.node, State: n.state, Fresh: n.fresh,
		Items: out.items, Total: out.items, ParsePending: pending}
	if cur, ok := p.nodes.get(k); ok {
		pr.State, pr.Fresh = cur.state, cur.fresh
	}
	j.report(pr)
	p.log.Info("node synced", "profile", k.profile, "service", k.service, "node", k.node, "items", out.items, "state", pr.State,
		"fresh", pr.Fresh, "parse_pending", pending, "duration", time.Since(start), "manual", manual)
	return nil
}

// waitParsed waits until no item of the node waits for its parser, or the
// parser is found down; it returns how many items still wait.
func (s *syncer) waitParsed(ctx context.Context, j *SyncJob, n nodeInfo, out listing) int {
	p := s.p
	if !n.parser {
		return 0
	}
	p.parse.scan(j.key, n.id, n.analyser)
	for {
		changed := p.parse.watch(n.id)
		counts, err := p.store.countItems(ctx, []int{n.id}, true)
		if err != nil {
			return 0
		}
		pending := counts[n.id]
		if pending == 0 || !p.analysers.available(n.analyser) || p.parse.isFailing(n.id) {
			// Done, or the parser is down (or its last batch of the node
			// failed): the items wait for it; the sync does not.
			return pending
		}
		pr := Progress{Profile: j.key.profile, Service: j.key.service, Node: j.key.node, State: n.state, Fresh: n.fresh,
			Items: out.items, Total: out.items, ParsePending: pending}
		j.report(pr)
		p.syncEvent(pr)
		select {
		case <-changed:
		case <-time.After(5 * time.Second): // a parser that went down says nothing
		case <-ctx.Done():
			return pending
		}
	}
}

// listing is the outcome of one whole listing of a node.
type listing struct {
	items   int
	partial bool
	// updated: an item was re-published during it.
	updated bool
}

// fetched is one answer of the listing's fetcher.
type fetched struct {
	page *xep0060.ItemsPage
	err  error
}

// listing fetches the whole node once: notifications secured first, then
// every item (RSM pages where the service honours RSM, the next page in
// flight while the current one is stored; one request otherwise), stored
// raw one transaction per page; items no longer on the service are removed
// at the end and the node made complete (or partial).
func (s *syncer) listing(ctx context.Context, j *SyncJob) (listing, error) {
	p := s.p
	k := j.key
	pp := p.params.of(ctx, k.profile)
	j.startRound()
	var n nodeInfo
	err := p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		if _, err := t.ensure(ctx, k); err != nil {
			return err
		}
		var err error
		n, _, err = t.transition(ctx, k, event{kind: evSyncStarted})
		return err
	})
	if err != nil {
		return listing{}, err
	}
	p.syncEvent(Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1})

	// Notifications first, so that nothing published during the fetch is missed.
	subscribed := n.subscribed
	if !subscribed {
		if _, serr := p.c.Subscribe(ctx, k.profile, k.service, k.node); serr == nil {
			subscribed = true
		} else {
			p.log.Info("cannot subscribe to the synced node", "profile", k.profile, "service", k.service, "node", k.node, "err", serr)
		}
	}
	secured := subscribed
	if isPEP(k.service) {
		s.wantNotify(k.node)
		secured = true
	}

	ictx := internal(ctx)
	beh := p.learn.get(ctx, n.profileID, k.service)
	useRSM := beh.RSM != serviceprofile.RsmNo
	if sup, known := p.c.RSMSupport(k.service); known && !sup {
		useRSM = false
	}
	fetch := func(after string) <-chan fetched {
		ch := make(chan fetched, 1)
		req := &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node}
		if useRSM {
			size := min(p.pageSize, pp.limit+1)
			req.RSM = &wire.RSMQuery{Max: &size}
			if after != "" {
				req.RSM.After = &after
			}
		}
		go func() {
			page, err := p.c.FetchItems(ictx, req)
			ch <- fetched{page, err}
		}()
		return ch
	}

	var pos int64
	seen := map[string]bool{}
	partial := false
	total := -1
	ch := fetch("")
	for {
		var f fetched
		select {
		case f = <-ch:
		case <-ctx.Done():
			return listing{}, ctx.Err()
		}
		if f.err != nil {
			return listing{}, fmt.Errorf("fetch items: %w", f.err)
		}
		page := f.page
		if useRSM && page.RSM == nil {
			// The service ignored RSM: this answer is the whole node.
			useRSM = false
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmNo })
		} else if page.RSM != nil {
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmYes })
			if page.RSM.Count != nil {
				total = *page.RSM.Count
			}
		}
		items := page.Items
		if len(items) > 0 {
			p.learn.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.PublisherInResults = publisherSeen(items) })
		}
		fresh := items[:0:0]
		for _, it := range items {
			if !seen[it.ID] {
				fresh = append(fresh, it)
			}
		}
		if int(pos)+len(fresh) > pp.limit {
			fresh = fresh[:pp.limit-int(pos)]
			partial = true
		}
		more := useRSM && !partial && len(fresh) > 0 && page.RSM != nil && page.RSM.Last != "" &&
			(total < 0 || int(pos)+len(fresh) < total)
		var next <-chan fetched
		if more {
			next = fetch(page.RSM.Last)
		}
		if !n.analysed && pos == 0 && len(fresh) > 0 {
			if m, ok := p.analyse(ctx, k, &fresh[0], pp); ok {
				n = m
			}
		}
		cursors := map[string]string{}
		if page.RSM != nil && len(items) > 0 {
			cursors[items[0].ID] = page.RSM.First
			cursors[items[len(items)-1].ID] = page.RSM.Last
		}
		if err := s.storePage(ctx, j, fresh, cursors, pos); err != nil {
			if next != nil {
				<-next
			}
			return listing{}, err
		}
		for _, it := range fresh {
			seen[it.ID] = true
		}
		pos += int64(len(fresh))
		pr := Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Items: int(pos), Total: total}
		j.report(pr)
		p.syncEvent(pr)
		if !more {
			break
		}
		ch = next
	}
	// Learned before the node is complete, so that no request of the
	// cache's own follows its completion.
	p.learn.probeIDsOrder(ctx, k, n, len(seen))
	p.learn.probeMaxItems(ctx, k, n.profileID, len(seen))
	var updated bool
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		// In the writer: every notification that came before is applied.
		updated = j.hadUpdates()
		return s.finish(ctx, t, j, seen, pos, partial, event{kind: evSyncDone, partial: partial, secured: secured && !updated, subscribed: subscribed})
	})
	if err != nil {
		return listing{}, err
	}
	p.pubs.forgetNode(k)
	return listing{items: int(pos), partial: partial, updated: updated}, nil
}

// storePage stores items raw (parse pending when the node has a parser),
// at positions from pos on, in the writer; items notifications changed
// meanwhile keep their newer payload and take their place in the
// service's order.
func (s *syncer) storePage(ctx context.Context, j *SyncJob, items []wire.Item, cursors map[string]string, pos int64) error {
	if len(items) == 0 {
		return nil
	}
	p := s.p
	stored := make([]storedItem, len(items))
	for i, it := range items {
		stored[i] = storedItem{Item: it, searchText: textOf(it.Payload), position: pos + int64(i), cursor: cursors[it.ID]}
	}
	return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		n, ok := t.node(j.key)
		if !ok {
			return fmt.Errorf("node %s is no longer cached", j.key.node)
		}
		var keep []storedItem
		for i := range stored {
			stored[i].parseState = parseStateFor(n)
			if j.isTouched(stored[i].ID) {
				if err := p.store.setPosition(ctx, t.c, n.id, stored[i].ID, stored[i].position); err != nil {
					return err
				}
				continue
			}
			keep = append(keep, stored[i])
		}
		pending, err := p.store.upsertItems(ctx, t.c, n.id, keep, p.index.inUse(), false)
		if err != nil {
			return err
		}
		p.queueParse(t, j.key, n, keep, pending)
		return nil
	})
}

// finish ends a listing in the writer: it removes items the service no
// longer has (unless partial), places items notified during the listing
// after the listed ones, and applies done, all in one transaction.
func (s *syncer) finish(ctx context.Context, t *wtx, j *SyncJob, seen map[string]bool, pos int64, partial bool, done event) error {
	p := s.p
	n, ok := t.node(j.key)
	if !ok {
		return fmt.Errorf("node %s is no longer cached", j.key.node)
	}
	// In the writer: no item is touched while this runs.
	touched := j.touchedIDs()
	isTouched := make(map[string]bool, len(touched))
	for _, id := range touched {
		isTouched[id] = true
	}
	// positions holds at least the touched items still cached.
	var positions map[string]int64
	if !partial {
		var err error
		if positions, err = p.store.itemPositions(ctx, t.c, n.id, nil); err != nil {
			return err
		}
		var gone []string
		for id := range positions {
			if !seen[id] && !isTouched[id] {
				gone = append(gone, id)
			}
		}
		if err := p.store.deleteItems(ctx, t.c, n.id, gone); err != nil {
			return fmt.Errorf("remove items gone from the service: %w", err)
		}
	}
	if len(touched) > 0 {
		if positions == nil {
			var err error
			if positions, err = p.store.itemPositions(ctx, t.c, n.id, touched); err != nil {
				return err
			}
		}
		// New items notified during the listing come after the listed ones,
		// in the order they were stored.
		var newer []string
		for _, id := range touched {
			if _, ok := positions[id]; ok && !seen[id] {
				newer = append(newer, id)
			}
		}
		sortByPosition(newer, positions)
		for i, id := range newer {
			if err := p.store.setPosition(ctx, t.c, n.id, id, pos+int64(i)); err != nil {
				return err
			}
		}
	}
	_, _, err := t.transition(ctx, j.key, done)
	return err
}

// syncEvent publishes the cache.sync event of pr (with the error and done
// when pr is the final state).
func (p *Plugin) syncEvent(pr Progress) {
	d := map[string]any{"service": pr.Service, "node": pr.Node, "state": string(pr.State), "items": pr.Items, "total": nullInt(pr.Total),
		"parse_pending": pr.ParsePending}
	if pr.Done {
		d["error"], d["done"], d["fresh"] = nullStr(pr.Err), true, pr.Fresh
	}
	p.publishEvent("cache.sync", pr.Profile, d)
}

func nullInt(v int) any {
	if v < 0 {
		return nil
	}
	return v
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}
