package pubsubcache

import (
	"context"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	"example.org/backend/ent"
	"example.org/backend/ent/analyserset"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// indexScope is the analyser_sets row whose digest lists the parsed paths
// the search side table is complete for (one per line, sorted).
const indexScope = "search-index"

// startSearch builds the searcher over the cache and mounts its API. A
// path is searched through the side table only once every cached item has
// its rows for it (searchablePaths); before that the engine's JSON
// functions answer (same results, slower).
func (p *Plugin) startSearch(ctx context.Context) error {
	row, err := p.h.Store.Client.AnalyserSet.Query().Where(analyserset.Scope(indexScope)).Only(ctx)
	switch {
	case err == nil:
		p.built = splitPaths(row.Digest)
	case ent.IsNotFound(err):
		p.built = nil
	default:
		return err
	}
	p.search = search.New(p.h.Store, p.searchablePaths)
	if p.h.API == nil {
		return nil
	}
	path, handler := search.NewHandler(p.search, func(id, publisher string, payload []byte) string {
		return wire.Wrap(wire.Item{ID: id, Publisher: publisher, Payload: payload})
	}, p.h.API.HandlerOptions(connect.WithSendMaxBytes(xep0060.MaxMessageBytes))...)
	return p.h.API.Register(ImportName, path, handler)
}

// Searcher returns the cache's search engine.
func (p *Plugin) Searcher() *search.Searcher { return p.search }

func splitPaths(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// searchablePaths returns the declared indexed paths whose side table is
// complete. When the declared set differs from the built one, the side
// table is rebuilt in the background.
func (p *Plugin) searchablePaths() []string {
	declared := p.indexedPaths() // sorted
	p.mu.Lock()
	built := p.built
	if !slices.Equal(declared, built) && !p.reindexing && p.ctx != nil && p.ctx.Err() == nil {
		p.reindexing = true
		p.wg.Add(1)
		go p.reindex(declared)
	}
	p.mu.Unlock()
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
func (p *Plugin) reindex(paths []string) {
	defer p.wg.Done()
	start := time.Now()
	err := search.Reindex(p.ctx, p.h.Store, paths, 500)
	if err == nil {
		err = p.h.Store.WithTx(p.ctx, func(tx *ent.Tx) error {
			digest := strings.Join(paths, "\n")
			n, err := tx.AnalyserSet.Update().Where(analyserset.Scope(indexScope)).SetDigest(digest).SetChangedAt(time.Now()).Save(p.ctx)
			if err != nil || n > 0 {
				return err
			}
			return tx.AnalyserSet.Create().SetScope(indexScope).SetDigest(digest).Exec(p.ctx)
		})
	}
	p.mu.Lock()
	p.reindexing = false
	if err == nil {
		p.built = paths
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Error("rebuilding the search index failed; searches use the slower JSON path", "err", err)
		return
	}
	p.log.Info("search index rebuilt", "paths", len(paths), "duration", time.Since(start))
}
