package pubsubcache

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
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
	// with the order of their last notification; for a reconciliation by
	// difference, since the job started (notified while it waited for its
	// slot, they are no anchor either).
	touched map[string]int
	seq     int
	// later are the touched items a page brought with another payload
	// than their notification's: re-published after the service answered
	// that page (their place there may be the old one).
	later map[string]bool
	// lost says notified items of the node could not be stored during the
	// current listing (its pages may predate them, and the items they
	// touched are not taken from the pages), or the node was purged, or
	// its max_items lowered, during it (its pages answered before may
	// bring back what the service removed): the listing does not make the
	// node fresh; another one settles it.
	lost bool
	// round is when the current listing began (before its first request).
	round time.Time
	// unsubscribed says the profile's subscription to the node ended
	// during the job: its listing ends as after it (subscriptionGone), not
	// complete with what begin saw.
	unsubscribed bool
}

// markUnsubscribed records the end of the profile's subscription.
func (j *SyncJob) markUnsubscribed() {
	j.mu.Lock()
	j.unsubscribed = true
	j.mu.Unlock()
}

// wasUnsubscribed reports whether markUnsubscribed was called.
func (j *SyncJob) wasUnsubscribed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.unsubscribed
}

// newSyncJob returns the job of k, not started: notifications may touch
// it (and mark items later) before its first listing begins.
func newSyncJob(k nodeKey) *SyncJob {
	return &SyncJob{key: k, done: make(chan struct{}), watchers: map[chan Progress]struct{}{}, touched: map[string]int{}, later: map[string]bool{},
		progress: Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1}}
}

// startRound forgets what the previous listing saw (but the items
// touched so far when keepTouched).
func (j *SyncJob) startRound(keepTouched bool) {
	j.mu.Lock()
	if !keepTouched {
		clear(j.touched)
	}
	j.later = map[string]bool{}
	j.lost = false
	j.round = time.Now()
	j.mu.Unlock()
}

// roundStart is when the current listing began.
func (j *SyncJob) roundStart() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.round
}

// markLost records notified items of the node that could not be stored,
// or a purge or a lowered max_items of the node, during the current
// listing.
func (j *SyncJob) markLost() {
	j.mu.Lock()
	j.lost = true
	j.mu.Unlock()
}

// hadLost reports whether markLost was called during the current listing.
func (j *SyncJob) hadLost() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lost
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
	j := newSyncJob(k)
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
