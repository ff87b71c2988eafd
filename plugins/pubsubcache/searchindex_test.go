package pubsubcache

import (
	"context"
	"slices"
	"testing"
	"time"

	"example.org/backend/ent/analyserset"
	"example.org/backend/ent/pubsubitemvalue"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/pubsubcache/search"
	"example.org/backend/plugins/xep0060"
)

// TestSearchIndex: the cache fills the search side table for the paths the
// analysers declare: items cached before a path was declared are indexed
// by a background rebuild, and the path is searched through the side
// table only once that rebuild is done (same results either way).
func TestSearchIndex(t *testing.T) {
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{}, "alice")
	ctx := context.Background()
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 4)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	if got := f.cache.index.paths(); len(got) != 0 {
		t.Fatalf("searchable paths before any declaration: %v", got)
	}
	filter, err := search.ParseFilter("id == it-0002")
	if err != nil {
		t.Fatal(err)
	}
	q := search.Query{Nodes: []string{node}, Filters: []search.Filter{filter}}
	res, err := f.cache.Searcher().Search(ctx, q)
	before := res.Rows
	if err != nil || len(before) != 1 {
		t.Fatalf("search through JSON functions: %v %v", before, err)
	}

	// The plugin now declares an indexed path.
	err = f.host.Analysers.Declare(ctx, "testplugin", []sdk.Analyser{
		{Name: "test-sync", Type: "test", NodePrefix: syncPrefix, ToSync: true, Parser: "p", IndexedPaths: []string{"id"}},
		{Name: "test-plain", Type: "plain", NodePrefix: plainPrefix},
	}, f.provider)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(f.cache.index.paths(), []string{"id"}) {
		if time.Now().After(deadline) {
			t.Fatal("the side table is never rebuilt for the declared path")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rows, err := f.host.Store.Client.PubsubItemValue.Query().Where(pubsubitemvalue.Path("id")).Count(ctx)
	if err != nil || rows != 4 {
		t.Errorf("side table rows for id: %d %v, want 4", rows, err)
	}
	// New items are indexed as they are stored.
	f.publish(t, "alice", svc, node, 4, 6)
	f.waitServed(t, "alice", svc, node)
	if rows, _ := f.host.Store.Client.PubsubItemValue.Query().Where(pubsubitemvalue.Path("id")).Count(ctx); rows != 6 {
		t.Errorf("side table rows after two publishes: %d, want 6", rows)
	}
	res, err = f.cache.Searcher().Search(ctx, q)
	after := res.Rows
	if err != nil || len(after) != 1 || after[0].ItemID != "it-0002" {
		t.Errorf("search through the side table: %v %v", after, err)
	}
	// Survives a restart: the built set is stored.
	row, err := f.host.Store.Client.AnalyserSet.Query().Where(analyserset.Scope(indexScope)).Only(ctx)
	if err != nil || row.Digest != "id" {
		t.Errorf("stored built paths: %+v %v", row, err)
	}
}
