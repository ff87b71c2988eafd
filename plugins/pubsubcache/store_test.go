package pubsubcache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/pubsubitem"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/pubsubcache/payloadcodec"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// engines are the storage engines the cache's storage tests run on.
var engines = []struct {
	name   string
	config func(t *testing.T) storage.Config
}{
	{storage.DriverSQLite, func(t *testing.T) storage.Config {
		return storage.Config{Driver: storage.DriverSQLite, DataDir: t.TempDir()}
	}},
	{storage.DriverPostgres, func(t *testing.T) storage.Config {
		pg := postgres(t)
		dsn, err := pg.NewDatabase(context.Background(), t.Name())
		if err != nil {
			t.Fatal(err)
		}
		return storage.Config{Driver: storage.DriverPostgres, DSN: dsn}
	}},
}

func openDB(t *testing.T, cfg storage.Config) (*nodeStore, int) {
	t.Helper()
	ctx := context.Background()
	store, err := storage.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pr, err := store.Client.Profile.Create().SetName("alice").SetJid("alice@example.org").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return newNodeStore(store), pr.ID
}

// loadNode reads one node row.
func (s *nodeStore) loadNode(ctx context.Context, t *testing.T, service, node string) nodeInfo {
	t.Helper()
	rows, err := s.loadNodes(ctx, s.db.Client)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.key.service == service && r.key.node == node {
			return r.n
		}
	}
	t.Fatalf("no node %s on %s", node, service)
	return nodeInfo{}
}

func TestStorage(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			if eng.name == storage.DriverPostgres {
				testsvc.Uses(t, "postgres")
			}
			d, pid := openDB(t, eng.config(t))
			ctx := context.Background()

			// Concurrent creations end with one row.
			var wg sync.WaitGroup
			ids := make([]int, 8)
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := d.createNode(ctx, d.db.Client, pid, "svc", "node")
					if err != nil {
						t.Error(err)
						return
					}
					ids[i] = n.id
				}()
			}
			wg.Wait()
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("createNode created several rows: %v", ids)
				}
			}
			n := d.loadNode(ctx, t, "svc", "node")
			if n.state != StateNever || n.analysed {
				t.Fatalf("new node: %+v", n)
			}
			// State round trip.
			max := 50
			n.analysed, n.version, n.analyser, n.typ, n.subtype = true, 7, "a", "blog", "comment"
			n.state, n.fresh, n.subscribed, n.attempts, n.lastError = StateError, false, true, 2, "boom"
			n.nextAttempt, n.maxItems = time.Now().Add(time.Minute).Truncate(time.Second), &max
			if err := d.saveNode(ctx, d.db.Client, n, true); err != nil {
				t.Fatal(err)
			}
			got := d.loadNode(ctx, t, "svc", "node")
			if got.version != 7 || got.analyser != "a" || got.subtype != "comment" || got.state != StateError ||
				got.attempts != 2 || got.lastError != "boom" || !got.subscribed || *got.maxItems != 50 || !got.nextAttempt.Equal(n.nextAttempt) {
				t.Fatalf("round trip: %+v", got)
			}
			got.analysed, got.analyser, got.maxItems, got.lastError, got.nextAttempt = false, "", nil, "", time.Time{}
			if err := d.saveNode(ctx, d.db.Client, got, false); err != nil {
				t.Fatal(err)
			}
			if again := d.loadNode(ctx, t, "svc", "node"); again.analysed || again.analyser != "" || again.typ != "" || again.maxItems != nil || again.lastError != "" {
				t.Fatalf("cleared fields: %+v", again)
			}

			// Items: exact bytes, upsert, orders; even items parsed.
			var items []storedItem
			var parsed []parsedItem
			for i := 0; i < 10; i++ {
				it := storedItem{Item: wire.Item{ID: fmt.Sprintf("i%d", i), Payload: payload(i)}, position: int64(i),
					parseState: pubsubitem.ParseStateNone, searchText: textOf(payload(i))}
				if i%2 == 0 {
					it.Publisher = "bob@example.org"
					it.parseState = pubsubitem.ParseStatePending
					parsed = append(parsed, parsedItem{id: it.ID, payload: it.Payload, state: pubsubitem.ParseStateOk,
						parsed: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), searchText: it.searchText + " parsed"})
				}
				items = append(items, it)
			}
			items[3].cursor = "cur-3"
			upsert := func(republished bool, items ...storedItem) []string {
				t.Helper()
				var pending []string
				err := d.db.WithTx(ctx, func(tx *ent.Tx) error {
					var err error
					pending, err = d.upsertItems(ctx, tx.Client(), n.id, items, false, republished)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return pending
			}
			if pending := upsert(false, items...); strings.Join(pending, ",") != "i0,i2,i4,i6,i8" {
				t.Errorf("pending after the first store: %v", pending)
			}
			err := d.db.WithTx(ctx, func(tx *ent.Tx) error {
				written, err := d.storeParsed(ctx, tx.Client(), n.id, parsed, nil, nil)
				if written != 5 {
					t.Errorf("stored %d parses, want 5", written)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			// Stored again unchanged (a new listing): the parse is kept; a
			// changed payload loses it.
			changed := items[2]
			changed.Payload = []byte("<changed xmlns='urn:x'/>")
			if pending := upsert(false, items[0], changed); strings.Join(pending, ",") != "i2" {
				t.Errorf("pending after storing i0 unchanged and i2 changed: %v", pending)
			}
			for id, want := range map[string]pubsubitem.ParseState{"i0": pubsubitem.ParseStateOk, "i2": pubsubitem.ParseStatePending} {
				row := d.db.Client.PubsubItem.Query().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID(id)).OnlyX(ctx)
				if row.ParseState != want || (want == pubsubitem.ParseStateOk) != (row.Parsed != nil) {
					t.Errorf("%s: parse_state %s parsed %v, want %s", id, row.ParseState, row.Parsed, want)
				}
			}
			upsert(false, items[2])
			all, err := d.readItems(ctx, readQuery{nodeID: n.id})
			if err != nil || len(all) != 10 {
				t.Fatalf("read all: %d %v", len(all), err)
			}
			for i, it := range all {
				if it.ID != items[i].ID || string(it.Payload) != string(items[i].Payload) || it.Publisher != items[i].Publisher {
					t.Errorf("item %d: %+v", i, it)
				}
			}
			// RSM reads: a page by index, the index a cursor names.
			page, err := d.readPage(ctx, n.id, 2, 3)
			if err != nil || len(page) != 3 || page[0].ID != "i2" || page[1].cursor != "cur-3" || page[2].ID != "i4" || string(page[2].Payload) != string(items[4].Payload) {
				t.Errorf("page 2+3: %+v %v", page, err)
			}
			for cursor, want := range map[string]int{"cur-3": 3, cacheCursorPrefix + "i7": 7, "nope": -1, cacheCursorPrefix + "nope": -1} {
				if got, err := d.cursorIndex(ctx, n.id, cursor); err != nil || got != want {
					t.Errorf("cursorIndex(%q) = %d %v, want %d", cursor, got, err, want)
				}
			}
			last3, _ := d.readItems(ctx, readQuery{nodeID: n.id, maxItems: 3})
			if idsOf(last3) != "i7,i8,i9" {
				t.Errorf("max 3 = %s", idsOf(last3))
			}
			byReq, _ := d.readItems(ctx, readQuery{nodeID: n.id, ids: []string{"i5", "x", "i1", "i5"}, idsInRequestOrder: true})
			if idsOf(byReq) != "i5,i1,i5" {
				t.Errorf("ids in request order = %s", idsOf(byReq))
			}
			byPos, _ := d.readItems(ctx, readQuery{nodeID: n.id, ids: []string{"i5", "x", "i1", "i5"}})
			if idsOf(byPos) != "i1,i5" {
				t.Errorf("ids in node order = %s", idsOf(byPos))
			}
			// Update: new payload, position kept, cursor kept when asked.
			up := items[3]
			up.Payload, up.cursor, up.position = []byte("<new xmlns='urn:x'>é &amp;</new>"), "", 3
			upsert(false, up)
			row, err := d.db.Client.PubsubItem.Query().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID("i3")).Only(ctx)
			if err != nil || string(row.Payload) != string(up.Payload) || row.Cursor == nil || *row.Cursor != "cur-3" || row.Position != 3 {
				t.Errorf("updated row: %+v %v", row, err)
			}
			// One statement mixing rows with and without a cursor (a sync
			// page): a row without one keeps the stored cursor.
			withCur := items[4]
			withCur.cursor = "cur-4b"
			upsert(false, up, withCur)
			for id, want := range map[string]string{"i3": "cur-3", "i4": "cur-4b"} {
				row, err := d.db.Client.PubsubItem.Query().Where(pubsubitem.NodeID(n.id), pubsubitem.ItemID(id)).Only(ctx)
				if err != nil || row.Cursor == nil || *row.Cursor != want {
					t.Errorf("cursor of %s after a mixed upsert: %+v %v, want %s", id, row, err, want)
				}
			}
			if p, _ := d.itemPositions(ctx, d.db.Client, n.id, []string{"i3", "i9"}); p["i3"] != 3 || p["i9"] != 9 {
				t.Errorf("positions = %v", p)
			}
			if m, _ := d.maxPosition(ctx, d.db.Client, n.id); m != 9 {
				t.Errorf("max position = %d", m)
			}
			counts, _ := d.countItems(ctx, []int{n.id}, false)
			if counts[n.id] != 10 {
				t.Errorf("count = %v", counts)
			}
			err = d.db.WithTx(ctx, func(tx *ent.Tx) error { _, err := d.trim(ctx, tx.Client(), n.id, 4); return err })
			if err != nil {
				t.Fatal(err)
			}
			if rest, _ := d.readItems(ctx, readQuery{nodeID: n.id}); idsOf(rest) != "i6,i7,i8,i9" {
				t.Errorf("after trim = %s", idsOf(rest))
			}
			// Order by modification as the cache saw it: a listing storing
			// an unchanged item moves nothing, a re-publish does.
			time.Sleep(10 * time.Millisecond)
			upsert(false, items[7])
			if mod, _ := d.readItems(ctx, readQuery{nodeID: n.id, orderBy: "modification"}); strings.HasSuffix(idsOf(mod), ",i7") {
				t.Errorf("by modification after an unchanged listing = %s", idsOf(mod))
			}
			upsert(true, items[6])
			if mod, _ := d.readItems(ctx, readQuery{nodeID: n.id, orderBy: "modification"}); !strings.HasSuffix(idsOf(mod), ",i6") {
				t.Errorf("by modification = %s", idsOf(mod))
			}
		})
	}
}

// TestSyncOnPostgres runs a sync, cache answers and a burst of
// notifications with the cache on PostgreSQL.
func TestSyncOnPostgres(t *testing.T) {
	testsvc.Uses(t, "postgres")
	pg := postgres(t)
	dsn, err := pg.NewDatabase(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, servers.Use(t, "ejabberd"), fixtureOpts{pageSize: 20, store: storage.Config{Driver: storage.DriverPostgres, DSN: dsn}}, "alice")
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 50)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	f.parity(t, "postgres", svc, node, []xep0060.ItemsRequest{{}, {MaxItems: 5}, {ItemIDs: []string{itemID(40), itemID(3)}}})
	f.publishParallel(t, "alice", svc, node, 50, 550, 8)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, _ := f.cache.Status(context.Background(), "alice", svc, node); len(st) == 1 && st[0].Items == 550 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.waitServed(t, "alice", svc, node)
	f.parity(t, "postgres after burst", svc, node, []xep0060.ItemsRequest{{}, {MaxItems: 100}})
}

// TestRestart: a daemon restart makes every node not fresh and resets a
// sync that was running (it starts again on next use); cached nodes are
// answered stale while the profile is offline.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := storage.Open(ctx, storage.Config{DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pr := store.Client.Profile.Create().SetName("alice").SetJid("alice@example.org").SaveX(ctx)
	done := store.Client.PubsubNode.Create().SetProfileID(pr.ID).SetService("alice@example.org").SetName("done").
		SetSyncState(StateComplete).SetFresh(true).SetSubscribed(true).SetAnalyserVersion(0).SaveX(ctx)
	store.Client.PubsubNode.Create().SetProfileID(pr.ID).SetService("alice@example.org").SetName("running").
		SetSyncState(StateInProgress).SetAnalyserVersion(0).SaveX(ctx)
	store.Client.PubsubItem.Create().SetNodeID(done.ID).SetItemID("a").SetPayload([]byte("<a xmlns='urn:a'/>")).SaveX(ctx)

	h := core.NewHost(log, "test")
	h.Store = store
	xp := xep0060.New()
	cache := New(xp)
	plugins := core.NewPlugins(h, xp, cache)
	if err := plugins.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer plugins.Close(ctx)
	st, err := cache.Status(ctx, "alice", "", "")
	if err != nil || len(st) != 2 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st[0].Node != "done" || st[0].State != "complete" || st[0].Fresh || st[1].Node != "running" || st[1].State != "never" {
		t.Errorf("after restart: %+v", st)
	}
	// Offline: answered from the cache, stale.
	page, err := xp.Client().Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Node: "done"})
	if err != nil || !page.FromCache || !page.Stale || idsOf(page.Items) != "a" {
		t.Errorf("offline get: %+v %v", page, err)
	}
}

// parsedDoc is the parsed JSON of a stored item (its stored form
// unpacked), nil when it has none.
func parsedDoc(t testing.TB, it *ent.PubsubItem) map[string]any {
	t.Helper()
	if it.Parsed == nil {
		return nil
	}
	payload, err := payloadcodec.Unpack(it.Payload)
	if err != nil {
		t.Fatalf("item %s: %v", it.ItemID, err)
	}
	doc, err := payloadcodec.UnpackParsed(it.Parsed, payload)
	if err != nil {
		t.Fatalf("item %s: %v", it.ItemID, err)
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("item %s: parsed %q: %v", it.ItemID, doc, err)
	}
	return m
}
