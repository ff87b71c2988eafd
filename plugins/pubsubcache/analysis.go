package pubsubcache

import (
	"bytes"
	"context"
	"encoding/xml"
	"slices"
	"sync"

	"example.org/backend/core/analysers"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/xep0060/wire"
)

// analyserSet is the cache's view of the analyser registry: nil-safe (a
// host without a registry analyses nothing). It holds no state.
type analyserSet struct{ r *analysers.Registry }

// version is the analyser set's version (0 without a registry).
func (a analyserSet) version() int64 {
	if a.r == nil {
		return 0
	}
	return a.r.Version()
}

// declared returns what the analyser called name declares: whether its
// nodes are synced and whether it has a parser.
func (a analyserSet) declared(name string) (toSync, parser bool) {
	if name == "" || a.r == nil {
		return false, false
	}
	d, ok := a.r.Lookup(name)
	return ok && d.ToSync, ok && d.Parser != ""
}

// parserVersion is the version of the analyser's parser ("" unknown).
func (a analyserSet) parserVersion(name string) string {
	if a.r == nil || name == "" {
		return ""
	}
	return a.r.ParserVersion(name)
}

// available reports whether the analyser's provider is running.
func (a analyserSet) available(name string) bool {
	return a.r != nil && a.r.Available(name)
}

// indexedPaths is the union of the analysers' declared IndexedPaths, the
// paths the search side table holds (sorted).
func (a analyserSet) indexedPaths() []string {
	if a.r == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range a.r.All() {
		for _, path := range d.IndexedPaths {
			if !seen[path] {
				seen[path] = true
				out = append(out, path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// analyses runs node analyses in the background (a get must not wait for
// one). It owns the set of nodes being analysed (one analysis per node at
// a time).
type analyses struct {
	mu       sync.Mutex
	inflight map[nodeKey]bool
}

// start reports whether an analysis of k may start (none running), and
// marks it running; end marks it done.
func (a *analyses) start(k nodeKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight[k] {
		return false
	}
	a.inflight[k] = true
	return true
}

func (a *analyses) end(k nodeKey) {
	a.mu.Lock()
	delete(a.inflight, k)
	a.mu.Unlock()
}

// payloadNamespace returns the namespace of the payload's first element.
func payloadNamespace(payload []byte) string {
	d := xml.NewDecoder(bytes.NewReader(payload))
	d.Strict = false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Space
		}
	}
}

// analyse runs the analyser registry on a node (no network request: the
// first item comes from an answer or from the cache) and stores the
// analysis with the set's version, in the writer. A node without items
// (first nil) is analysed by its name alone (the analysers' node
// prefixes); when none matches, nothing is stored (ok false). When the
// analyser changes, the node's items are parsed again by the new one.
func (p *Plugin) analyse(ctx context.Context, k nodeKey, first *wire.Item, pp profileParams) (nodeInfo, bool) {
	if p.analysers.r == nil {
		return nodeInfo{}, false
	}
	version := p.analysers.version()
	var a analysers.Analyser
	var matched bool
	if first != nil {
		a, matched = p.analysers.r.Match(k.node, payloadNamespace(first.Payload), pp.allowed())
	} else {
		// No item: by the node's name alone (a namespace needs an item).
		if a, matched = p.analysers.r.MatchEmpty(k.node, pp.allowed()); !matched {
			return nodeInfo{}, false
		}
	}
	var an analysis
	if matched {
		an = analysis{analyser: a.Name, typ: a.Type, subtype: a.Subtype, toSync: a.ToSync, parser: a.Parser != ""}
		if a.Match {
			mr := sdk.MatchRequest{Profile: k.profile, Service: k.service, Node: k.node, Analyser: a.Name}
			if first != nil {
				mr.FirstItem = &sdk.Item{ID: first.ID, Publisher: first.Publisher, Payload: first.Payload}
			}
			res, err := p.analysers.r.Refine(ctx, mr)
			switch {
			case err != nil:
				p.log.Info("analyser match callback unavailable; keeping its declaration", "analyser", a.Name, "err", err)
			case res.Drop:
				an = analysis{}
			case res.Subtype != "":
				an.subtype = res.Subtype
			}
		}
	}
	var n nodeInfo
	err := p.w.run(ctx, func(ctx context.Context, t *wtx) error {
		before, err := t.ensure(ctx, k)
		if err != nil {
			return err
		}
		if n, _, err = t.transition(ctx, k, event{kind: evAnalysed, analysis: an, version: version}); err != nil {
			return err
		}
		changed := 0
		if before.analyser != n.analyser {
			// Another analyser: what was parsed is its predecessor's.
			if changed, err = p.store.reparseAll(ctx, t.c, n.id, n.parser); err != nil {
				return err
			}
		} else if n.parser {
			// Items stored before the analyser applied.
			if changed, err = p.store.markPending(ctx, t.c, n.id); err != nil {
				return err
			}
		}
		if changed > 0 && n.parser {
			t.afterwards(func() { p.parse.scan(k, n.id, n.analyser) })
		}
		return nil
	})
	if err != nil {
		p.log.Warn("storing a node analysis failed", "profile", k.profile, "service", k.service, "node", k.node, "err", err)
		return nodeInfo{}, false
	}
	return n, true
}

// analyseLater analyses k in the background (first: its first item, nil
// to read it from the cache), then starts its sync when its analyser says
// so and it was never synced.
func (p *Plugin) analyseLater(k nodeKey, first *wire.Item, fromCache bool, pp profileParams) {
	if !p.inflight.start(k) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.inflight.end(k)
		ctx := p.ctx
		if fromCache {
			if n, ok := p.nodes.get(k); ok {
				if items, err := p.store.readPage(ctx, n.id, 0, 1); err == nil && len(items) > 0 {
					first = &items[0].Item
				}
			}
		}
		n, ok := p.analyse(ctx, k, first, pp)
		if ok && n.toSync && n.state == StateNever && p.online(k.profile) {
			p.sync.launch(k, false)
		}
	}()
}

// providerUp returns a channel closed the next time a provider comes up
// (never without a registry).
func (a analyserSet) providerUp() <-chan struct{} {
	if a.r == nil {
		return nil
	}
	return a.r.ProviderUp()
}
