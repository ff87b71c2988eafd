package pubsubcache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
	"example.org/backend/triggers"
)

// maxRounds bounds the whole listings of one sync: a listing during which
// an item was re-published is followed by another one, which settles its
// place.
const maxRounds = 3

// syncer runs node syncs and checks. It owns the running jobs (one sync
// and one check per node), the per-profile sync slots
// (cache.sync_concurrency whole listings, probeFactor times as many
// reconciliations by difference) and the nodes whose notifications it
// asked PEP services for (+notify). Its lock guards those maps only.
type syncer struct {
	p *Plugin

	mu       sync.Mutex
	jobs     map[nodeKey]*SyncJob
	checks   map[nodeKey]*SyncJob
	sems     map[semKey]chan struct{}
	notified map[string]bool
}

// semKey names a profile's sync slots: for whole listings, or for
// reconciliations by difference (probe).
type semKey struct {
	profile string
	probe   bool
}

// probeFactor: a profile runs this many times cache.sync_concurrency
// reconciliations by difference at once. Their requests are small (an id
// listing, a page of the newest items) and their time is round trips, not
// transfer: after a reconnection, twenty nodes reconciled two at a time
// spent most of it waiting in turn.
const probeFactor = 4

func newSyncer(p *Plugin) *syncer {
	return &syncer{p: p, jobs: map[nodeKey]*SyncJob{}, checks: map[nodeKey]*SyncJob{}, sems: map[semKey]chan struct{}{}, notified: map[string]bool{}}
}

// errSessionEnded interrupts the syncs of a profile whose session ended.
var errSessionEnded = errors.New("the profile's session ended")

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
	// Unchanged is how many listed items were the same as stored: not
	// parsed, written nor indexed again.
	Unchanged int
	Err       string
	Done      bool
}

// SyncJob is one sync of a node, until the node is usable: whole listings
// (a second one when an item was re-published during the first), then
// every item parsed, or the parser found down. A second request for the
// same node joins it.
type SyncJob struct {
	key  nodeKey
	done chan struct{}
	err  error

	cancel context.CancelCauseFunc
	// again: run the job once more when it ends (checks; the syncer's
	// lock guards it).
	again bool

	mu       sync.Mutex
	progress Progress
	watchers map[chan Progress]struct{}
	// touched are item ids notifications changed during the current
	// listing (their stored state is newer than what the pages bring),
	// with the order of their last notification.
	touched map[string]int
	seq     int
	// later are the touched items a page brought with another payload
	// than their notification's: re-published after the service answered
	// that page (their place there may be the old one).
	later map[string]bool
	// updated says an item was re-published during the current listing
	// on a service whose way of placing re-published items is not known:
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
	j.later = map[string]bool{}
	j.mu.Unlock()
}

// markLater records an item re-published after its page was answered.
func (j *SyncJob) markLater(id string) {
	j.mu.Lock()
	j.later[id] = true
	j.mu.Unlock()
}

// isLater reports whether markLater recorded id.
func (j *SyncJob) isLater(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.later[id]
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
		j.seq++
		j.touched[id] = j.seq
	}
	j.mu.Unlock()
}

// forgetTouched forgets the items notified so far: a check lists the
// node again (a job that runs once more), and what was notified before the
// listing is in it.
func (j *SyncJob) forgetTouched() {
	j.mu.Lock()
	clear(j.touched)
	j.mu.Unlock()
}

func (j *SyncJob) isTouched(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.touched[id]
	return ok
}

// touchedIDs returns the touched ids in the order of their last
// notification.
func (j *SyncJob) touchedIDs() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.touched))
	for id := range j.touched {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(j.touched[a], j.touched[b]) })
	return out
}

// running returns the sync running for k, if any.
func (s *syncer) running(k nodeKey) *SyncJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[k]
}

// checking returns the check running for k, if any.
func (s *syncer) checking(k nodeKey) *SyncJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checks[k]
}

// launch starts a background sync of k, or returns the one running.
func (s *syncer) launch(k nodeKey, manual bool) *SyncJob {
	return s.start(k, s.jobs, false, func(ctx context.Context, j *SyncJob) error { return s.run(ctx, j, manual) })
}

// check starts a background check of k (is every cached item still on
// the service?); when one runs, it runs once more after it (what it
// listed may predate the items that asked for this one).
func (s *syncer) check(k nodeKey) *SyncJob {
	return s.start(k, s.checks, true, func(ctx context.Context, j *SyncJob) error { return s.verify(ctx, j) })
}

// start runs a job of k in jobs, or returns the one running (which, with
// again, runs once more when it ends).
func (s *syncer) start(k nodeKey, jobs map[nodeKey]*SyncJob, again bool, run func(ctx context.Context, j *SyncJob) error) *SyncJob {
	p := s.p
	s.mu.Lock()
	if j := jobs[k]; j != nil {
		if again {
			j.again = true
		}
		s.mu.Unlock()
		return j
	}
	j := &SyncJob{key: k, done: make(chan struct{}), watchers: map[chan Progress]struct{}{}, touched: map[string]int{},
		progress: Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1}}
	if p.ctx == nil || p.ctx.Err() != nil {
		s.mu.Unlock()
		j.err = errors.New("pubsub cache is stopped")
		close(j.done)
		return j
	}
	ctx, cancel := context.WithCancelCause(p.ctx)
	j.cancel = cancel
	jobs[k] = j
	p.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer p.wg.Done()
		var err error
		for {
			err = run(ctx, j)
			s.mu.Lock()
			more := j.again && err == nil && ctx.Err() == nil
			j.again = false
			if !more {
				delete(jobs, k)
				s.mu.Unlock()
				break
			}
			s.mu.Unlock()
		}
		cancel(nil)
		j.err = err
		close(j.done)
	}()
	return j
}

// interrupt stops the syncs and checks of a profile (its session ended)
// and waits (10 s at most) until they have recorded their interruption:
// a fresh login may follow at once (a refused stream resumption binds
// afresh on the same stream), and its reconciliation must see them.
func (s *syncer) interrupt(profileName string) {
	s.mu.Lock()
	var stopped []*SyncJob
	for _, m := range []map[nodeKey]*SyncJob{s.jobs, s.checks} {
		for k, j := range m {
			if k.profile == profileName {
				j.cancel(errSessionEnded)
				stopped = append(stopped, j)
			}
		}
	}
	s.mu.Unlock()
	timeout := time.After(10 * time.Second)
	for _, j := range stopped {
		select {
		case <-j.done:
		case <-timeout:
			s.p.log.Warn("interrupted syncs still running", "profile", profileName)
			return
		}
	}
}

// semaphore returns the profile's sync slots: cache.sync_concurrency for
// whole listings, probeFactor times as many for reconciliations by
// difference (probe).
func (s *syncer) semaphore(ctx context.Context, profileName string, probe bool) chan struct{} {
	size := s.p.params.of(ctx, profileName).concurrency
	if probe {
		size *= probeFactor
	}
	k := semKey{profileName, probe}
	s.mu.Lock()
	defer s.mu.Unlock()
	sem := s.sems[k]
	if sem == nil || cap(sem) != size {
		sem = make(chan struct{}, size)
		s.sems[k] = sem
	}
	return sem
}

// slot is a sync slot held by one run; release gives it back (once).
type slot struct {
	sem   chan struct{}
	probe bool // a slot for reconciliations by difference
}

// acquire waits for one of the profile's sync slots.
func (s *syncer) acquire(ctx context.Context, profileName string, probe bool) (*slot, error) {
	sem := s.semaphore(ctx, profileName, probe)
	select {
	case sem <- struct{}{}:
		return &slot{sem: sem, probe: probe}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (sl *slot) release() {
	if sl != nil && sl.sem != nil {
		<-sl.sem
		sl.sem = nil
	}
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

// run syncs the node until it is usable: listings (maxRounds at most),
// then the parse of its items.
func (s *syncer) run(ctx context.Context, j *SyncJob, manual bool) (err error) {
	p := s.p
	k := j.key
	mode := p.params.of(ctx, k.profile).reconcile
	if p.reconcileMode != "" {
		mode = p.reconcileMode
	}
	methodOf := func() string {
		n, _ := p.nodes.get(k)
		return methodFor(n, p.learn.get(ctx, n.profileID, k.service), mode, manual)
	}
	method := methodOf()
	held, err := s.acquire(ctx, k.profile, method != methodFull)
	if err != nil {
		return err
	}
	// What the node is once the slot is had decides (it may have changed
	// while waiting); a whole listing waits for a slot of its kind.
	if method = methodOf(); method == methodFull && held.probe {
		held.release()
		if held, err = s.acquire(ctx, k.profile, false); err != nil {
			return err
		}
	}
	start := time.Now()
	defer func() { held.release() }()
	var out listing
	defer func() {
		pr := j.Progress()
		pr.Done = true
		if err != nil && p.ctx.Err() == nil {
			// A sync cut by the end of the session is interrupted, not
			// failed: no backoff, it starts again when the profile
			// connects. (Stopped by the daemon's stop, it stays in
			// progress in the database and starts again at the next
			// start.)
			ev := event{kind: evSyncFailed, err: err.Error()}
			if errors.Is(context.Cause(ctx), errSessionEnded) || !p.online(k.profile) {
				ev = event{kind: evSyncInterrupted, err: err.Error()}
			}
			pr.State, pr.Err = StateError, err.Error()
			var failed nodeInfo
			ferr := p.w.run(context.WithoutCancel(ctx), func(ctx context.Context, t *wtx) error {
				var terr error
				failed, _, terr = t.transition(ctx, k, ev)
				return terr
			})
			if ferr == nil {
				pr.State = failed.state
			}
			if ev.kind == evSyncInterrupted {
				p.log.Info("node sync interrupted; it starts again when the profile connects", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
				p.synced(failed.typ, "interrupted", time.Since(start))
			} else {
				p.log.Warn("node sync failed", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
				p.synced(failed.typ, "error", time.Since(start))
			}
		}
		if err == nil {
			n, _ := p.nodes.get(k)
			outcome := "complete"
			if pr.State == StatePartial {
				outcome = "partial"
			}
			p.synced(n.typ, outcome, time.Since(start))
		}
		j.report(pr)
		p.syncEvent(pr)
	}()
	if method != methodFull {
		out, err = s.reconcile(ctx, j, method)
		switch {
		case errors.Is(err, errFallback):
			p.log.Info("node listed whole: reconciliation by difference not possible", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
			method = methodFull
		case err != nil:
			return err
		case out.updated:
			method = methodFull // an item re-published meanwhile: its place is settled by a whole listing
		}
		if method == methodFull {
			// A whole listing takes a slot of its own kind.
			held.release()
			if held, err = s.acquire(ctx, k.profile, false); err != nil {
				return err
			}
		}
	}
	for round := 1; method == methodFull; round++ {
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
	held.release() // parsing does not hold a sync slot
	listed := time.Since(start)
	n, _ := p.nodes.get(k)
	pending := s.waitParsed(ctx, j, n, out)
	p.log.Debug("sync phases", "node", k.node, "listed", listed, "parsed", time.Since(start)-listed)
	pr := Progress{Profile: k.profile, Service: k.service, Node: k.node, State: n.state, Fresh: n.fresh,
		Items: out.items, Total: out.items, ParsePending: pending, Unchanged: out.unchanged}
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
	// unchanged items were the same as stored (not written again).
	unchanged int
	// updated: an item was re-published during it.
	updated bool
}

// fetched is one answer of the listing's fetcher.
type fetched struct {
	page *xep0060.ItemsPage
	err  error
}

// begin starts a listing or a reconciliation of the node: the node in
// progress, notifications secured first (so that nothing published
// meanwhile is missed), its configuration read (in the background with
// async: configRead waits for it; nil otherwise).
func (s *syncer) begin(ctx context.Context, j *SyncJob, async bool) (n nodeInfo, secured, subscribed bool, configRead func(), err error) {
	p := s.p
	k := j.key
	j.startRound()
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		if _, err := t.ensure(ctx, k); err != nil {
			return err
		}
		var err error
		n, _, err = t.transition(ctx, k, event{kind: evSyncStarted})
		return err
	})
	if err != nil {
		return n, false, false, nil, err
	}
	p.syncEvent(Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1})

	// Notifications first, so that nothing published during the fetch is missed.
	subscribed = n.subscribed
	if !subscribed {
		if _, serr := p.c.Subscribe(ctx, k.profile, k.service, k.node); serr == nil {
			subscribed = true
		} else {
			p.log.Info("cannot subscribe to the synced node", "profile", k.profile, "service", k.service, "node", k.node, "err", serr)
		}
	}
	secured = subscribed
	if isPEP(k.service) {
		s.wantNotify(k.node)
		secured = true
	}
	if !async {
		s.readConfig(ctx, k)
		return n, secured, subscribed, nil, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.readConfig(ctx, k)
	}()
	return n, secured, subscribed, func() { <-done }, nil
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
	n, secured, subscribed, _, err := s.begin(ctx, j, false)
	if err != nil {
		return listing{}, err
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
	var order []string // listed ids, in the service's order
	unchanged := 0
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
		same, err := s.storePage(ctx, j, fresh, cursors, pos)
		if err != nil {
			if next != nil {
				<-next
			}
			return listing{}, err
		}
		unchanged += same
		for _, it := range fresh {
			seen[it.ID] = true
			order = append(order, it.ID)
		}
		pos += int64(len(fresh))
		pr := Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Items: int(pos), Total: total, Unchanged: unchanged}
		j.report(pr)
		p.syncEvent(pr)
		if !more {
			break
		}
		ch = next
	}
	if !n.analysed && len(seen) == 0 {
		// An empty node: analysed by its name alone.
		if m, ok := p.analyse(ctx, k, nil, pp); ok {
			n = m
		}
	}
	// Learned before the node is complete, so that no request of the
	// cache's own follows its completion.
	s.probeMoves(ctx, j, n, order)
	p.learn.probeIDsOrder(ctx, k, n, len(seen))
	p.learn.probeMaxItems(ctx, k, n.profileID, len(seen))
	p.learn.probeRSMIndex(ctx, k, n, len(seen))
	var updated bool
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		// In the writer: every notification that came before is applied.
		var err error
		updated, err = s.finish(ctx, t, j, seen, pos, partial, secured, subscribed, methodFull)
		return err
	})
	if err != nil {
		return listing{}, err
	}
	p.pubs.forgetNode(k)
	return listing{items: int(pos), partial: partial, updated: updated, unchanged: unchanged}, nil
}

// storePage stores a page's items at positions from pos on, in the
// writer; it returns how many were unchanged (same payload, already parsed
// by this parser version: not parsed, written nor indexed again, only
// placed). The others are parsed here first, out of the writer, while the
// next page is fetched; those the parser could not take (down, failing)
// are stored parse pending for the parse queue. An item a notification
// changed meanwhile keeps its newer payload (and takes its place in the
// service's order) unless the page brings the same payload (the service's
// copy as its items answers show it).
func (s *syncer) storePage(ctx context.Context, j *SyncJob, items []wire.Item, cursors map[string]string, pos int64) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	p := s.p
	n, _ := p.nodes.get(j.key)
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	before, err := p.store.states(ctx, p.store.db.Client, n.id, ids)
	if err != nil {
		return 0, err
	}
	version := p.analysers.parserVersion(n.analyser)
	unchangedNow := func(st storedState, ok bool, digest []byte) bool {
		return ok && bytes.Equal(st.digest, digest) && (!n.parser || (st.parseState == pubsubitem.ParseStateOk || st.parseState == pubsubitem.ParseStateError) && st.parserVersion == version)
	}
	stored := make([]storedItem, len(items))
	var toParse []wire.Item
	for i, it := range items {
		stored[i] = storedItem{Item: it, digest: digestOf(it.Payload), position: pos + int64(i), cursor: cursors[it.ID]}
		if st, ok := before[it.ID]; !unchangedNow(st, ok, stored[i].digest) {
			stored[i].searchText = textOf(it.Payload)
			toParse = append(toParse, it)
		}
	}
	var parsed map[string]parsedItem
	if n.parser && len(toParse) > 0 && p.analysers.available(n.analyser) {
		parsed = s.parsePage(j.key, n.analyser, toParse)
	}
	unchanged := 0
	err = p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		unchanged = 0
		n, ok := t.node(j.key)
		if !ok {
			return fmt.Errorf("node %s is no longer cached", j.key.node)
		}
		now, err := p.store.states(ctx, t.c, n.id, ids)
		if err != nil {
			return err
		}
		var keep []storedItem
		values := map[string]json.RawMessage{}
		for i := range stored {
			it := &stored[i]
			st, had := now[it.ID]
			if j.isTouched(it.ID) && !(had && bytes.Equal(st.digest, it.digest)) {
				// A newer payload came by notification: it stays, placed
				// where the page says.
				j.markLater(it.ID)
				if err := p.store.setPosition(ctx, t.c, n.id, it.ID, it.position); err != nil {
					return err
				}
				continue
			}
			if _, reparsed := parsed[it.ID]; !reparsed && unchangedNow(st, had, it.digest) {
				unchanged++
				if st.position != it.position || it.cursor != "" && it.cursor != st.cursor {
					if err := p.store.placeItem(ctx, t.c, n.id, it.ID, it.position, it.cursor); err != nil {
						return err
					}
				}
				continue
			}
			if it.searchText == "" {
				it.searchText = textOf(it.Payload) // changed since it was read
			}
			it.parseState = parseStateFor(n)
			if r, ok := parsed[it.ID]; ok && n.parser {
				it.parseState, it.parsed, it.parseErr, it.searchText, it.parserVersion = r.state, r.parsed, r.err, r.searchText, r.version
				if r.state == pubsubitem.ParseStateOk {
					values[r.id] = r.parsed
				}
			}
			keep = append(keep, *it)
		}
		pending, err := p.store.upsertItems(ctx, t.c, n.id, keep, p.index.inUse(), false)
		if err != nil {
			return err
		}
		if err := p.store.indexParsed(ctx, t.c, n.id, values, p.analysers.indexedPaths(), p.index.item); err != nil {
			return err
		}
		p.queueParse(t, j.key, n, keep, pending)
		return nil
	})
	if err == nil && unchanged > 0 {
		p.unchangedItems(unchanged)
	}
	return unchanged, err
}

// parsePage parses a page's items with the node's parser, parseBatch at a
// time, keyed by item id; a batch the parser fails is left out (its items
// are stored pending).
func (s *syncer) parsePage(k nodeKey, analyser string, items []wire.Item) map[string]parsedItem {
	out := make(map[string]parsedItem, len(items))
	for start := 0; start < len(items); start += parseBatch {
		res, err := s.p.parse.parseBatch(k, analyser, items[start:min(start+parseBatch, len(items))])
		if err != nil {
			s.p.log.Info("parsing a sync page failed; its items wait for the parser", "node", k.node, "err", err)
			return out
		}
		for _, r := range res {
			out[r.id] = r
		}
	}
	return out
}

// probeMoves learns, on a service whose way of placing re-published items
// is not known yet, where it put an item re-published after its page was
// answered (X, the last such): one request for the newest item. X itself
// on a service that moves re-published items to the end; the newest item
// the listing showed (L), on one that keeps their place.
func (s *syncer) probeMoves(ctx context.Context, j *SyncJob, n nodeInfo, order []string) {
	p := s.p
	k := j.key
	if p.learn.get(ctx, n.profileID, k.service).RepublishMoves != serviceprofile.RepublishMovesUnknown || len(order) < 2 {
		return
	}
	x, xPos := "", -1
	for _, id := range slices.Backward(j.touchedIDs()) {
		if j.isLater(id) {
			x = id
			break
		}
	}
	if x == "" {
		return
	}
	last := ""
	for i := len(order) - 1; i >= 0; i-- {
		if order[i] == x {
			xPos = i
		}
		if last == "" && !j.isTouched(order[i]) {
			last = order[i]
		}
	}
	if last == "" || xPos < 0 || xPos == len(order)-1 {
		return // X was the newest anyway: its place tells nothing
	}
	p.learn.newestIs(ctx, k, n.profileID, x, last)
}

// finish ends a listing in the writer, in one transaction: it removes
// items the service no longer has (unless partial), places the items
// notifications changed during the listing, and makes the node complete
// (or partial). Where those items go follows the service: after the
// listed ones, in the order of their notifications, for every item on a
// service that moves re-published items to the end (Prosody), for new
// items only on one that keeps their place (ejabberd). On a service whose
// way is not known yet, a listed item notified meanwhile may be in its
// old place: updated is true, and the node is listed again.
func (s *syncer) finish(ctx context.Context, t *wtx, j *SyncJob, seen map[string]bool, pos int64, partial, secured, subscribed bool, method string) (updated bool, err error) {
	p := s.p
	n, ok := t.node(j.key)
	if !ok {
		return false, fmt.Errorf("node %s is no longer cached", j.key.node)
	}
	beh := p.learn.get(ctx, n.profileID, j.key.service)
	// In the writer: no item is touched while this runs.
	touched := j.touchedIDs()
	isTouched := make(map[string]bool, len(touched))
	for _, id := range touched {
		isTouched[id] = true
	}
	// positions holds at least the touched items still cached.
	var positions map[string]int64
	if !partial {
		if positions, err = p.store.itemPositions(ctx, t.c, n.id, nil); err != nil {
			return false, err
		}
		var gone []string
		for id := range positions {
			if !seen[id] && !isTouched[id] {
				gone = append(gone, id)
				delete(positions, id)
			}
		}
		if err := p.store.deleteItems(ctx, t.c, n.id, gone); err != nil {
			return false, fmt.Errorf("remove items gone from the service: %w", err)
		}
	}
	if len(touched) > 0 {
		if positions == nil {
			if positions, err = p.store.itemPositions(ctx, t.c, n.id, touched); err != nil {
				return false, err
			}
		}
		var place []string
		for _, id := range touched {
			if _, ok := positions[id]; !ok {
				continue // retracted
			}
			switch {
			case !seen[id]:
				place = append(place, id) // new during the listing
			case beh.RepublishMoves == serviceprofile.RepublishMovesYes:
				place = append(place, id)
			case beh.RepublishMoves == serviceprofile.RepublishMovesUnknown && j.isLater(id):
				// Re-published after its page: its place depends on a
				// behaviour not known yet. (Notified before, the page
				// shows where the service put it.)
				updated = true
			}
		}
		for i, id := range place {
			if err := p.store.setPosition(ctx, t.c, n.id, id, pos+int64(i)); err != nil {
				return false, err
			}
		}
		if beh.PublisherInResults == "no" {
			// Served as the service's items answers show them.
			if err := p.store.clearPublishers(ctx, t.c, n.id, touched); err != nil {
				return false, err
			}
		}
	}
	if partial {
		// cache.item_limit bounds the node, notified items included.
		if _, err := p.store.trim(ctx, t.c, n.id, p.params.of(ctx, j.key.profile).limit); err != nil {
			return false, err
		}
	}
	count, err := p.store.count(ctx, t.c, n.id)
	if err != nil {
		return false, err
	}
	updated = updated || j.hadUpdates()
	_, _, err = t.transition(ctx, j.key, event{kind: evSyncDone, partial: partial, secured: secured && !updated, subscribed: subscribed, count: count, method: method})
	return updated, err
}

// verify checks, with one listing of the node's item ids (disco#items),
// that the service still holds every cached item: a full node drops its
// oldest items without telling (Prosody, ejabberd's PEP nodes). Items gone
// are removed, and when some were the service's count is its capacity;
// items the service has that the cache lacks make the node listed again.
func (s *syncer) verify(ctx context.Context, j *SyncJob) error {
	p := s.p
	k := j.key
	n, ok := p.nodes.get(k)
	if !ok {
		return nil
	}
	// Notifications come in bursts, and a service trims a full node while
	// it stores a new item: the listing waits for both to settle.
	select {
	case <-time.After(checkDelay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if n, ok = p.nodes.get(k); !ok {
		return nil
	}
	if n.state != StateComplete {
		// Partial (cache.item_limit), or being listed: nothing to check
		// against the service's listing.
		return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
			_, _, err := t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			return err
		})
	}
	held, err := p.store.count(ctx, p.store.db.Client, n.id)
	if err != nil {
		return err
	}
	// Items notified from now on may be missing from the listing; those
	// notified before are in it (a check run again after more
	// notifications must not keep sparing them, or it never ends).
	j.forgetTouched()
	ids, err := s.serviceIDs(ctx, k, n, held)
	if err != nil {
		p.log.Info("checking a node's items failed; it is listed again", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		return p.w.run(context.WithoutCancel(ctx), func(ctx context.Context, t *wtx) error {
			n, ok, err := t.transition(ctx, k, event{kind: evNotFresh})
			if err == nil && ok && n.verifying {
				_, _, err = t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			}
			t.afterwards(func() { s.launch(k, false) })
			return err
		})
	}
	if ids == nil {
		// The service holds as many items as the cache: nothing dropped.
		return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
			if _, _, err := t.transition(ctx, k, event{kind: evVerified, count: held}); err != nil {
				return err
			}
			return s.stillUnverified(ctx, t, k)
		})
	}
	server := make(map[string]bool, len(ids))
	for _, id := range ids {
		server[id] = true
	}
	return p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		n, ok := t.node(k)
		if !ok || n.state != StateComplete {
			_, _, err := t.transition(ctx, k, event{kind: evVerified, count: n.verified})
			return err
		}
		positions, err := p.store.itemPositions(ctx, t.c, n.id, nil)
		if err != nil {
			return err
		}
		touched := map[string]bool{}
		for _, id := range j.touchedIDs() {
			touched[id] = true
		}
		var gone []string
		for id := range positions {
			if !server[id] && !touched[id] {
				gone = append(gone, id)
			}
		}
		missed := false
		for id := range server {
			if _, ok := positions[id]; !ok && !touched[id] {
				missed = true
			}
		}
		if err := p.store.deleteItems(ctx, t.c, n.id, gone); err != nil {
			return err
		}
		learned := 0
		if len(gone) > 0 && oldest(gone, positions) {
			// The oldest items went without a retraction: the node is
			// full, the service keeps that many.
			learned = len(ids)
		}
		if n, _, err = t.transition(ctx, k, event{kind: evVerified, count: len(ids), learned: learned}); err != nil {
			return err
		}
		if lim := n.limit(); lim > 0 {
			// Learned (or known): the service keeps that many; items
			// notified during the check beyond them went too.
			if _, err := p.store.trim(ctx, t.c, n.id, lim); err != nil {
				return err
			}
		}
		if err := s.stillUnverified(ctx, t, k); err != nil {
			return err
		}
		if len(gone) > 0 {
			p.log.Info("the service dropped items without telling; removed from the cache", "profile", k.profile, "service", k.service, "node", k.node,
				"items", len(gone), "capacity", learned)
		}
		if missed || len(gone) > 0 && learned == 0 {
			// Items the cache never saw, or a removal it cannot explain:
			// listed again.
			if _, _, err := t.transition(ctx, k, event{kind: evNotFresh}); err != nil {
				return err
			}
			t.afterwards(func() { s.launch(k, false) })
		}
		return nil
	})
}

// checkDelay is how long a check waits before listing the node's ids.
const checkDelay = 250 * time.Millisecond

// errCountDiffers says a service's item count differs from the cache's.
var errCountDiffers = errors.New("the service holds another number of items")

// serviceIDs returns the ids of the items the service holds in the node
// (the cache holds held items), or nil when it holds at least as many as
// the cache: with disco#items on the node where the service lets the
// profile list it; else, on a service that pages, its count alone
// (errCountDiffers when it is not held); else the held most recent items
// (max_items: the service returns fewer when it holds fewer).
func (s *syncer) serviceIDs(ctx context.Context, k nodeKey, n nodeInfo, held int) ([]string, error) {
	p := s.p
	ids, err := p.c.ItemIDs(ctx, k.profile, k.service, k.node)
	if err == nil {
		return ids, nil
	}
	ictx := internal(ctx)
	if p.learn.get(ctx, n.profileID, k.service).RSM == serviceprofile.RsmYes {
		zero := 0
		page, err := p.c.FetchItems(ictx, &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, RSM: &wire.RSMQuery{Max: &zero}})
		switch {
		case err != nil:
			return nil, err
		case page.RSM == nil || page.RSM.Count == nil:
			return nil, fmt.Errorf("count of %s: no count in the answer", k.node)
		case *page.RSM.Count != held:
			return nil, fmt.Errorf("%w (%d, the cache %d)", errCountDiffers, *page.RSM.Count, held)
		}
		return nil, nil
	}
	page, err := p.c.FetchItems(ictx, &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: max(held, 1)})
	if err != nil {
		return nil, err
	}
	if len(page.Items) >= held {
		// The service holds at least as many (items published meanwhile
		// may have pushed older ones out of this answer, not out of the
		// node): nothing was dropped.
		return nil, nil
	}
	ids = make([]string, len(page.Items))
	for i, it := range page.Items {
		ids[i] = it.ID
	}
	return ids, nil
}

// stillUnverified keeps the node off the cache, checked once more, when
// notifications brought it beyond what the check verified meanwhile.
func (s *syncer) stillUnverified(ctx context.Context, t *wtx, k nodeKey) error {
	n, ok := t.node(k)
	if !ok || n.limit() > 0 || n.state != StateComplete {
		return nil
	}
	count, err := s.p.store.count(ctx, t.c, n.id)
	if err != nil || count <= n.verified {
		return err
	}
	if _, _, err := t.transition(ctx, k, event{kind: evUnverified}); err != nil {
		return err
	}
	t.afterwards(func() { s.check(k) })
	return nil
}

// oldest reports whether gone are the oldest of the items at positions.
func oldest(gone []string, positions map[string]int64) bool {
	max := int64(-1 << 62)
	isGone := make(map[string]bool, len(gone))
	for _, id := range gone {
		isGone[id] = true
		max = maxOf(max, positions[id])
	}
	for id, pos := range positions {
		if !isGone[id] && pos < max {
			return false
		}
	}
	return true
}

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// readConfig reads the node's configuration, when the service lets the
// profile read it (owners everywhere, publishers too on Prosody): its
// capacity (pubsub#max_items, or the range behind "max") and publish
// model.
func (s *syncer) readConfig(ctx context.Context, k nodeKey) {
	p := s.p
	fields, err := p.c.NodeConfig(ctx, xep0060.NodeRequest{Profile: k.profile, Service: k.service, Node: k.node})
	if err != nil {
		p.log.Debug("node configuration not readable; its capacity is learned", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		return
	}
	e := event{kind: evConfigRead}
	for _, f := range fields {
		v := ""
		if len(f.Values) > 0 {
			v = strings.TrimSpace(f.Values[0])
		}
		switch f.Var {
		case "pubsub#max_items":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				e.capacity, e.capSource = n, "config"
			} else if v == "max" {
				if n, err := strconv.Atoi(f.RangeMax); err == nil && n > 0 {
					e.capacity, e.capSource = n, "config_range"
				}
			}
		case "pubsub#publish_model":
			e.publishModel = v
		}
	}
	if err := p.w.run(ctx, p.transitionOf(k, e, false)); err != nil {
		p.log.Warn("storing a node's configuration", "node", k.node, "err", err)
	}
}

// syncEvent fires SyncProgressed with pr (bridged to the API's event
// stream as cache_sync).
func (p *Plugin) syncEvent(pr Progress) {
	if err := triggers.Notify(context.Background(), p.h.Bus, SyncProgressed, pr); err != nil {
		p.log.Warn("cache.sync observers", "node", pr.Node, "err", err)
	}
}
