package pubsubcache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"example.org/backend/core/analysers"
	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/ent/serviceprofile"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// parseBatch is how many items one Parse call gets.
const parseBatch = 100

// Progress is the progress of a sync.
type Progress struct {
	Profile, Service, Node string
	State                  State
	// Items is how many items are stored so far; Total the node's size
	// when the service told it (-1 otherwise).
	Items, Total int
	Err          string
	Done         bool
}

// SyncJob is one running sync of a node; a second request for the same node
// joins it (one sync at a time per profile, service and node).
type SyncJob struct {
	key  nodeKey
	done chan struct{}
	err  error

	mu       sync.Mutex
	progress Progress
	watchers map[chan Progress]struct{}
	// touched are item ids notifications changed during the sync: their
	// stored state is newer than what the pages bring.
	touched map[string]bool
	// updated says an existing item was re-published during the sync: its
	// place may be the old one; the node is then synced again before it
	// is served (not fresh).
	updated bool
}

func (j *SyncJob) markUpdated() {
	j.mu.Lock()
	j.updated = true
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

// runningJob returns the sync running for k, if any.
func (p *Plugin) runningJob(k nodeKey) *SyncJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobs[k]
}

// launch starts a background sync of k, or returns the one running.
func (p *Plugin) launch(k nodeKey, manual bool) *SyncJob {
	p.mu.Lock()
	if j := p.jobs[k]; j != nil {
		p.mu.Unlock()
		return j
	}
	j := &SyncJob{key: k, done: make(chan struct{}), watchers: map[chan Progress]struct{}{}, touched: map[string]bool{},
		progress: Progress{Profile: k.profile, Service: k.service, Node: k.node, State: StateInProgress, Total: -1}}
	if p.ctx == nil || p.ctx.Err() != nil {
		p.mu.Unlock()
		j.err = errors.New("pubsub cache is stopped")
		close(j.done)
		return j
	}
	p.jobs[k] = j
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		err := p.runSync(p.ctx, j, manual)
		p.mu.Lock()
		delete(p.jobs, k)
		p.mu.Unlock()
		j.err = err
		close(j.done)
		if err == nil && j.hadUpdates() && j.Progress().State != StatePartial {
			// An item was re-published (or re-sent) during the sync: its
			// place is settled by one more sync. Not for a partial node:
			// it is not served from the cache, and the same limit would
			// stop the next sync again (a wasted whole fetch).
			p.launch(k, false)
		}
	}()
	return j
}

// semaphore returns the profile's sync slots (cache.sync_concurrency).
func (p *Plugin) semaphore(ctx context.Context, profileName string) chan struct{} {
	size := p.paramsOf(ctx, profileName).concurrency
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sems[profileName]
	if s == nil || cap(s) != size {
		s = make(chan struct{}, size)
		p.sems[profileName] = s
	}
	return s
}

// wantNotify asks PEP services for notifications of node (+notify in caps).
func (p *Plugin) wantNotify(node string) {
	p.mu.Lock()
	first := !p.notified[node]
	p.notified[node] = true
	p.mu.Unlock()
	if first {
		p.c.WantNotify(node)
	}
}

// fetched is one answer of the sync's fetcher.
type fetched struct {
	page *xep0060.ItemsPage
	err  error
}

// runSync syncs the whole node: notifications secured first, then every
// item fetched (RSM pages when the service honours RSM, the next page in
// flight while the current one is stored; one request otherwise), parsed
// and stored one transaction per page; items no longer on the service are
// removed at the end.
func (p *Plugin) runSync(ctx context.Context, j *SyncJob, manual bool) (err error) {
	k := j.key
	sem := p.semaphore(ctx, k.profile)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	start := time.Now()
	pp := p.paramsOf(ctx, k.profile)
	n, err := p.transition(ctx, k, event{kind: evSyncStarted})
	if err != nil {
		return err
	}
	p.syncEvent(j.Progress())
	defer func() {
		j.mu.Lock()
		pr := j.progress
		j.mu.Unlock()
		pr.Done = true
		if err != nil {
			pr.State, pr.Err = StateError, err.Error()
			if n2, terr := p.transition(context.WithoutCancel(ctx), k, event{kind: evSyncFailed, err: err.Error()}); terr == nil {
				pr.State = n2.state
			}
			p.log.Warn("node sync failed", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		}
		j.report(pr)
		p.syncEvent(pr)
	}()

	// Notifications first, so that nothing published during the fetch is missed.
	if !n.subscribed {
		if _, serr := p.c.Subscribe(ctx, k.profile, k.service, k.node); serr == nil {
			n.subscribed = true
		} else {
			p.log.Info("cannot subscribe to the synced node", "profile", k.profile, "service", k.service, "node", k.node, "err", serr)
		}
	}
	secured := n.subscribed
	if isPEP(k.service) {
		p.wantNotify(k.node)
		secured = true
	}

	ictx := internal(ctx)
	beh := p.beh.get(ctx, n.profileID, k.service)
	useRSM := beh.RSM != serviceprofile.RsmNo
	if s, known := p.c.RSMSupport(k.service); known && !s {
		useRSM = false
	}
	analysedNow := false // analysed by this sync's first page
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
			return ctx.Err()
		}
		if f.err != nil {
			return fmt.Errorf("fetch items: %w", f.err)
		}
		page := f.page
		if useRSM && page.RSM == nil {
			// The service ignored RSM: this answer is the whole node.
			useRSM = false
			if lerr := p.beh.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmNo }); lerr != nil {
				p.log.Warn("learning service behaviour", "err", lerr)
			}
		} else if page.RSM != nil {
			_ = p.beh.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.RSM = serviceprofile.RsmYes })
			if page.RSM.Count != nil {
				total = *page.RSM.Count
			}
		}
		items := page.Items
		if len(items) > 0 {
			_ = p.beh.learn(ctx, n.profileID, k.service, func(b *behaviour) { b.PublisherInResults = publisherSeen(items) })
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
			if m, ok, aerr := p.analyse(ctx, k, &fresh[0], pp); aerr == nil && ok {
				m.state, m.fresh, m.subscribed = StateInProgress, false, n.subscribed
				n = m
				analysedNow = true
			}
		}
		cursors := map[string]string{}
		if page.RSM != nil && len(items) > 0 {
			cursors[items[0].ID] = page.RSM.First
			cursors[items[len(items)-1].ID] = page.RSM.Last
		}
		if err := p.storePage(ctx, j, n, fresh, cursors, pos); err != nil {
			if next != nil {
				<-next
			}
			return err
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
	if err := p.finishSync(ctx, j, n, seen, pos, partial); err != nil {
		return err
	}
	if analysedNow {
		if err := p.parseEarlyNotifications(ctx, k, n); err != nil {
			return err
		}
	}
	// Learned before the node is complete, so that no request of the
	// cache's own follows its completion.
	p.probeIDsOrder(ctx, k, n, len(seen))
	p.probeMaxItems(ctx, k, n.profileID, len(seen))
	if _, err := p.ensure(ctx, k); err != nil {
		return err
	}
	done, _, err := p.modify(ctx, k, func(n2 *nodeInfo) bool {
		n2.subscribed = n.subscribed
		*n2 = apply(*n2, event{kind: evSyncDone, partial: partial, secured: secured && !j.hadUpdates()}, time.Now())
		return true
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	delete(p.pending, k)
	p.mu.Unlock()
	j.report(Progress{Profile: k.profile, Service: k.service, Node: k.node, State: done.state, Items: int(pos), Total: total})
	p.log.Info("node synced", "profile", k.profile, "service", k.service, "node", k.node, "items", pos, "state", done.state,
		"fresh", done.fresh, "duration", time.Since(start), "manual", manual)
	return nil
}

// parseEarlyNotifications parses the items that notifications stored
// before this sync's first page told which analyser applies (the last item
// a service sends on subscription, say): they were stored unparsed. They
// become pending (through the writer, after those notifications) and are
// parsed before the sync ends.
func (p *Plugin) parseEarlyNotifications(ctx context.Context, k nodeKey, n nodeInfo) error {
	if n.analyser == "" || p.h.Analysers == nil {
		return nil
	}
	if a, ok := p.h.Analysers.Lookup(n.analyser); !ok || a.Parser == "" {
		return nil
	}
	marked := 0
	err := p.w.do(ctx, op{kind: opFunc, key: k, fn: func(ctx context.Context) error {
		var err error
		marked, err = p.h.Store.Client.PubsubItem.Update().
			Where(pubsubitem.NodeID(n.id), pubsubitem.ParseStateEQ(pubsubitem.ParseStateNone)).
			SetParseState(pubsubitem.ParseStatePending).Save(ctx)
		return err
	}})
	if err != nil {
		return fmt.Errorf("mark early notified items to parse: %w", err)
	}
	if marked == 0 {
		return nil
	}
	return p.reparsePending(ctx)
}

// syncEvent publishes the cache.sync event of pr (with the error and done
// when pr is the final state).
func (p *Plugin) syncEvent(pr Progress) {
	d := map[string]any{"service": pr.Service, "node": pr.Node, "state": string(pr.State), "items": pr.Items, "total": nullInt(pr.Total)}
	if pr.Done {
		d["error"], d["done"] = nullStr(pr.Err), true
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

// storePage parses items and stores them in one transaction, at positions
// from pos on; items notifications changed meanwhile are left alone.
func (p *Plugin) storePage(ctx context.Context, j *SyncJob, n nodeInfo, items []wire.Item, cursors map[string]string, pos int64) error {
	if len(items) == 0 {
		return nil
	}
	stored := p.parse(ctx, j.key, n.analyser, items)
	var keep, touched []storedItem
	for i := range stored {
		stored[i].position = pos + int64(i)
		stored[i].cursor = cursors[stored[i].ID]
		if j.isTouched(stored[i].ID) {
			touched = append(touched, stored[i])
		} else {
			keep = append(keep, stored[i])
		}
	}
	return p.w.do(ctx, op{kind: opFunc, key: j.key, fn: func(ctx context.Context) error {
		return p.storePageTx(ctx, n, keep, touched)
	}})
}

// storePageTx writes a page in the writer (after the notifications that
// came before it, before those that come after).
func (p *Plugin) storePageTx(ctx context.Context, n nodeInfo, keep, touched []storedItem) error {
	return p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
		// A page hands out the cursors of its first and last items: the
		// others keep the cursors learned before (from live answers).
		if err := p.db.upsertItems(ctx, tx, n.id, keep); err != nil {
			return err
		}
		// Items notifications changed meanwhile keep their newer payload,
		// and take their place in the service's order.
		for _, it := range touched {
			if err := tx.PubsubItem.Update().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID(it.ID)).SetPosition(it.position).Exec(ctx); err != nil {
				return fmt.Errorf("place item %s: %w", it.ID, err)
			}
		}
		return nil
	})
}

// finishSync removes items the service no longer has (unless partial) and
// places items notified during the sync after the synced ones.
func (p *Plugin) finishSync(ctx context.Context, j *SyncJob, n nodeInfo, seen map[string]bool, pos int64, partial bool) error {
	return p.w.do(ctx, op{kind: opFunc, key: j.key, fn: func(ctx context.Context) error {
		return p.finishSyncTx(ctx, j, n, seen, pos, partial)
	}})
}

func (p *Plugin) finishSyncTx(ctx context.Context, j *SyncJob, n nodeInfo, seen map[string]bool, pos int64, partial bool) error {
	// Runs in the writer: no item is touched while it runs.
	touched := j.touchedIDs()
	isTouched := make(map[string]bool, len(touched))
	for _, id := range touched {
		isTouched[id] = true
	}
	return p.h.Store.WithTx(ctx, func(tx *ent.Tx) error {
		// positions holds at least the touched items still cached.
		var positions map[string]int64
		if !partial {
			var err error
			if positions, err = p.db.itemPositions(ctx, tx.Client(), n.id, nil); err != nil {
				return err
			}
			var gone []string
			for id := range positions {
				if !seen[id] && !isTouched[id] {
					gone = append(gone, id)
				}
			}
			for start := 0; start < len(gone); start += 500 {
				if _, err := tx.PubsubItem.Delete().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemIDIn(gone[start:min(start+500, len(gone))]...)).Exec(ctx); err != nil {
					return fmt.Errorf("remove items gone from the service: %w", err)
				}
			}
		}
		if len(touched) == 0 {
			return nil
		}
		if positions == nil {
			var err error
			if positions, err = p.db.itemPositions(ctx, tx.Client(), n.id, touched); err != nil {
				return err
			}
		}
		// New items notified during the sync come after the synced ones, in
		// the order they were stored.
		var newer []string
		for _, id := range touched {
			if _, ok := positions[id]; ok && !seen[id] {
				newer = append(newer, id)
			}
		}
		sortByPosition(newer, positions)
		for i, id := range newer {
			if err := tx.PubsubItem.Update().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID(id)).SetPosition(pos + int64(i)).Exec(ctx); err != nil {
				return fmt.Errorf("place item %s: %w", id, err)
			}
		}
		return nil
	})
}

func sortByPosition(ids []string, pos map[string]int64) {
	slices.SortStableFunc(ids, func(a, b string) int { return cmp.Compare(pos[a], pos[b]) })
}

// parse turns items into rows: search text always, parsed JSON through the
// node's analyser when it has a parser (parse pending while its plugin is
// down: nothing is lost, the raw item is stored).
func (p *Plugin) parse(ctx context.Context, k nodeKey, analyser string, items []wire.Item) []storedItem {
	out := make([]storedItem, len(items))
	for i, it := range items {
		out[i] = storedItem{Item: it, parseState: pubsubitem.ParseStateNone, searchText: textOf(it.Payload)}
	}
	if analyser == "" || p.h.Analysers == nil {
		return out
	}
	a, ok := p.h.Analysers.Lookup(analyser)
	if !ok || a.Parser == "" {
		return out
	}
	for start := 0; start < len(items); start += parseBatch {
		end := min(start+parseBatch, len(items))
		req := sdk.ParseRequest{Profile: k.profile, Service: k.service, Node: k.node, Analyser: analyser, Items: make([]sdk.Item, 0, end-start)}
		for _, it := range items[start:end] {
			req.Items = append(req.Items, sdk.Item{ID: it.ID, Publisher: it.Publisher, Payload: it.Payload})
		}
		res, err := p.h.Analysers.Parse(ctx, req)
		switch {
		case errors.Is(err, analysers.ErrProviderDown):
			for i := start; i < end; i++ {
				out[i].parseState = pubsubitem.ParseStatePending
			}
			continue
		case err != nil:
			// The whole batch failed (plugin crashed, hung, or restarting):
			// pending, parsed again when its provider is back up.
			p.log.Warn("parse batch failed; items stay pending", "analyser", analyser, "items", end-start, "err", err)
			for i := start; i < end; i++ {
				out[i].parseState = pubsubitem.ParseStatePending
			}
			p.nudgeReparse()
			continue
		}
		byID := make(map[string]sdk.ParseResult, len(res))
		for _, r := range res {
			byID[r.ID] = r
		}
		for i := start; i < end; i++ {
			r, ok := byID[out[i].ID]
			switch {
			case !ok:
				out[i].parseState, out[i].parseErr = pubsubitem.ParseStateError, "the parser returned no result for this item"
			case r.Err != nil:
				out[i].parseState, out[i].parseErr = pubsubitem.ParseStateError, r.Err.Error()
			default:
				out[i].parseState, out[i].parsed = pubsubitem.ParseStateOk, r.JSON
				if r.SearchText != "" {
					out[i].searchText = strings.TrimSpace(out[i].searchText + "\n" + r.SearchText)
				}
			}
		}
	}
	return out
}

// textOf returns the character data of a payload without markup.
func textOf(payload []byte) string {
	d := xml.NewDecoder(bytes.NewReader(payload))
	d.Strict = false
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if cd, ok := tok.(xml.CharData); ok {
			t := bytes.TrimSpace(cd)
			if len(t) == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.Write(t)
		}
	}
	return b.String()
}

// Progress returns the latest progress.
func (j *SyncJob) Progress() Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.progress
}

// probeIDsOrder learns, once per service, in which order it answers a
// request for several ids (request order or node order): one request for
// two cached items in reverse order.
func (p *Plugin) probeIDsOrder(ctx context.Context, k nodeKey, n nodeInfo, synced int) {
	profileID := n.profileID
	if synced < 2 || p.beh.get(ctx, profileID, k.service).IDsOrder != serviceprofile.IdsOrderUnknown {
		return
	}
	firsts, err := p.db.readPage(ctx, n.id, 0, 1)
	if err != nil || len(firsts) == 0 {
		return
	}
	lasts, err := p.db.readItems(ctx, readQuery{nodeID: n.id, maxItems: 1})
	if err != nil || len(lasts) == 0 || lasts[0].ID == firsts[0].ID {
		return
	}
	first, last := firsts[0].ID, lasts[0].ID
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, ItemIDs: []string{last, first}})
	if err != nil || len(page.Items) != 2 {
		return
	}
	order := serviceprofile.IdsOrderCreation
	if page.Items[0].ID == last {
		order = serviceprofile.IdsOrderRequest
	}
	if err := p.beh.learn(ctx, profileID, k.service, func(b *behaviour) { b.IDsOrder = order }); err != nil {
		p.log.Warn("learning service behaviour", "err", err)
	}
}

// probeMaxItems learns, once per service, whether it answers max_items
// with an RSM <set/> (ejabberd does), which cached answers then carry
// too: one request for the last item.
func (p *Plugin) probeMaxItems(ctx context.Context, k nodeKey, profileID int, items int) {
	if items == 0 || p.beh.get(ctx, profileID, k.service).MaxItemsRSM != serviceprofile.MaxItemsRsmUnknown {
		return
	}
	page, err := p.c.FetchItems(internal(ctx), &xep0060.ItemsRequest{Profile: k.profile, Service: k.service, Node: k.node, MaxItems: 1})
	if err != nil {
		return
	}
	v := serviceprofile.MaxItemsRsmNo
	if page.RSM != nil {
		v = serviceprofile.MaxItemsRsmYes
	}
	if err := p.beh.learn(ctx, profileID, k.service, func(b *behaviour) { b.MaxItemsRSM = v }); err != nil {
		p.log.Warn("learning service behaviour", "err", err)
	}
}
