package pubsubcache

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/ent"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// searchIndex keeps the search side table (pubsub_item_values) complete
// for the paths the analysers declare. It owns the set of paths the table
// is complete for (built, stored in the analyser_sets row "search-index")
// and whether a rebuild runs; mu guards both (no I/O under it).
type searchIndex struct {
	p *Plugin

	mu         sync.Mutex
	built      []string
	reindexing bool

	// auto creates the expression indexes of undeclared paths searched
	// (set by start, closed by Plugin.Close).
	auto *search.AutoIndex
}

// start reads the built paths, builds the searcher over the cache and
// mounts its API. A path is searched through the side table only once
// every cached item has its rows for it (paths); before that the engine's
// JSON functions answer (same results, slower).
func (ix *searchIndex) start(ctx context.Context) (*search.Searcher, error) {
	p := ix.p
	built, err := p.store.builtIndexPaths(ctx)
	if err != nil {
		return nil, err
	}
	ix.built = built
	s := search.New(p.h.Store, ix.paths)
	if ix.auto, err = search.NewAutoIndex(ctx, p.h.Store, p.log); err != nil {
		return nil, err
	}
	s.UseAutoIndex(ix.auto)
	if p.h.API == nil {
		return s, nil
	}
	wrap := func(id, publisher string, payload []byte) string {
		return wire.Wrap(wire.Item{ID: id, Publisher: publisher, Payload: payload})
	}
	opts := p.h.API.HandlerOptions(connect.WithSendMaxBytes(xep0060.MaxMessageBytes))
	path, handler := search.NewHandlerV2(s, wrap, opts...)
	if err := p.h.API.Register(ImportName, path, handler); err != nil {
		return s, err
	}
	path, handler = search.NewHandler(s, wrap, opts...)
	return s, p.h.API.Register(ImportName, path, handler)
}

// inUse reports whether the side table is maintained (some analyser
// declares indexed paths).
func (ix *searchIndex) inUse() bool { return len(ix.p.analysers.indexedPaths()) > 0 }

// item replaces the side-table rows of one stored item.
func (ix *searchIndex) item(ctx context.Context, c *ent.Client, rowID int, parsed json.RawMessage, paths []string) error {
	return search.IndexItem(ctx, c, rowID, parsed, paths)
}

// paths returns the declared indexed paths whose side table is complete.
// When the declared set differs from the built one, the side table is
// rebuilt in the background.
func (ix *searchIndex) paths() []string {
	p := ix.p
	declared := p.analysers.indexedPaths() // sorted
	ix.mu.Lock()
	built := ix.built
	if !slices.Equal(declared, built) && !ix.reindexing && p.ctx != nil && p.ctx.Err() == nil {
		ix.reindexing = true
		p.wg.Add(1)
		go ix.reindex(declared)
	}
	ix.mu.Unlock()
	var out []string
	for _, d := range declared {
		if slices.Contains(built, d) {
			out = append(out, d)
		}
	}
	return out
}

// reindex rebuilds the side table for paths and records them as built.
// Items stored meanwhile are indexed with the declared paths of their
// time, a superset of what this run needs when the set only grew; when
// it changed again, the next search starts another run.
func (ix *searchIndex) reindex(paths []string) {
	p := ix.p
	defer p.wg.Done()
	start := time.Now()
	err := search.Reindex(p.ctx, paths, 500, func(ctx context.Context, fn func(c *ent.Client) error) error {
		return p.w.run(ctx, func(ctx context.Context, t *wtx) error { return fn(t.c) })
	})
	if err == nil {
		err = p.store.setBuiltIndexPaths(p.ctx, paths)
	}
	ix.mu.Lock()
	ix.reindexing = false
	if err == nil {
		ix.built = paths
	}
	ix.mu.Unlock()
	if err != nil {
		p.log.Error("rebuilding the search index failed; searches use the slower JSON path", "err", err)
		return
	}
	p.log.Info("search index rebuilt", "paths", len(paths), "duration", time.Since(start))
}
