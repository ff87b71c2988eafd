package pubsubcache

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.org/backend/ent/pubsubitem"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

// TestRepeatedNotifications: in a batch of item writes, a notification
// identical to the previous one of its node (a PEP service delivers once
// for the subscription and once for +notify) is skipped; anything else is
// applied.
func TestRepeatedNotifications(t *testing.T) {
	k := nodeKey{"alice", "alice@example.org", "urn:xmpp:microblog:0"}
	other := nodeKey{"bob", "alice@example.org", "urn:xmpp:microblog:0"}
	item := func(id, payload string) []wire.Item {
		return []wire.Item{{ID: id, Publisher: "alice@example.org", Payload: []byte(payload)}}
	}
	steps := []struct {
		what string
		o    op
		skip bool
	}{
		{"first delivery", op{kind: opItems, key: k, items: item("1", "<a/>")}, false},
		{"second delivery", op{kind: opItems, key: k, items: item("1", "<a/>")}, true},
		{"same item for another profile", op{kind: opItems, key: other, items: item("1", "<a/>")}, false},
		{"third delivery, after another node's", op{kind: opItems, key: k, items: item("1", "<a/>")}, true},
		{"new payload", op{kind: opItems, key: k, items: item("1", "<b/>")}, false},
		{"its repeat", op{kind: opItems, key: k, items: item("1", "<b/>")}, true},
		{"the first payload again (a real re-publish)", op{kind: opItems, key: k, items: item("1", "<a/>")}, false},
		{"other publisher", op{kind: opItems, key: k, items: []wire.Item{{ID: "1", Publisher: "eve@example.org", Payload: []byte("<a/>")}}}, false},
		{"retraction", op{kind: opItems, key: k, retracted: []string{"1"}}, false},
		{"repeated retraction", op{kind: opItems, key: k, retracted: []string{"1"}}, true},
		{"item whose fields spell a retraction", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
		{"refetched copy", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}, refetched: true}, false},
		{"same item after the refetch", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
		{"a write waited for", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}, done: make(chan error, 1)}, false},
		{"same item after it", op{kind: opItems, key: k, items: []wire.Item{{ID: "1"}}}, false},
	}
	ops := make([]op, len(steps))
	for i, s := range steps {
		ops[i] = s.o
	}
	skip := repeats(ops)
	for i, s := range steps {
		if skip[i] != s.skip {
			t.Errorf("%s: skipped=%v, want %v", s.what, skip[i], s.skip)
		}
	}
}

// TestFailedItemsWriteNotFresh: notified items that cannot be stored
// leave their node not fresh (answered from the network until
// reconciled) by the time the write is reported failed: the cache never
// answers without them as if it held the node.
func TestFailedItemsWriteNotFresh(t *testing.T) {
	f, svc, node := cachedNode(t, "prosody", 3)
	ctx := ctxT(t)

	// Every insert into the items table fails from now on.
	db := f.host.Store.DB
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER test_fail_items BEFORE INSERT ON pubsub_items BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(`DROP TRIGGER IF EXISTS test_fail_items`) })
	k := nodeKey{"alice", svc, node}
	if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{{ID: "it-new", Payload: payload(7)}}, nil, false)); err == nil {
		t.Fatal("the items write did not fail")
	}
	st, err := f.cache.Status(ctx, "alice", svc, node)
	if err != nil || len(st) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st[0].Fresh {
		t.Fatalf("node still fresh after its notified items could not be stored: %+v", st[0])
	}
	page, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if page.FromCache && !page.Stale {
		t.Fatalf("answered from the cache as fresh: %+v", page)
	}
}

// TestFailedItemsWriteDuringSync: notified items that cannot be stored
// while the node is being listed do not leave it fresh once the listing
// ends: the listing's pages may predate them, and the items they touched
// are not taken from the pages (their notification's copy was to stay).
// The node is listed again.
func TestFailedItemsWriteDuringSync(t *testing.T) {
	f, svc, node := cachedNode(t, "prosody", 3)
	ctx := ctxT(t)
	k := nodeKey{"alice", svc, node}
	lost := itemID(3)

	// Inserting the new item fails from now on.
	db := f.host.Store.DB
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER test_fail_item BEFORE INSERT ON pubsub_items WHEN NEW.item_id = '`+lost+`' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(`DROP TRIGGER IF EXISTS test_fail_item`) })

	// The writer held, a sync starts (its first write waits in the queue,
	// after the start of its round) and the item's notification is queued
	// behind it: it is applied, and fails, during the listing.
	entered, release := make(chan struct{}), make(chan struct{})
	go f.cache.w.run(ctx, func(context.Context, *wtx) error { close(entered); <-release; return nil })
	<-entered
	j := f.cache.sync.launch(k, true)
	f.publish(t, "alice", svc, node, 3, 4)
	queued := func() (begun, notified bool) {
		w := f.cache.w
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, o := range w.ops {
			begun = begun || o.kind == opFunc
		}
		return begun, w.queued[k] > 0
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, n := queued(); b && n {
			break
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the sync's write and the notification were not queued")
		}
	}
	close(release)
	<-j.Done()

	has := func() bool {
		ok, err := f.host.Store.Client.PubsubItem.Query().Where(pubsubitem.ItemID(lost)).Exist(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	st, err := f.cache.Status(ctx, "alice", svc, node)
	if err != nil || len(st) != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st[0].Fresh && !has() {
		t.Fatalf("node fresh after its sync, without the item whose notification could not be stored: %+v", st[0])
	}

	// Once items can be stored again, a sync brings it.
	if _, err := db.ExecContext(ctx, `DROP TRIGGER test_fail_item`); err != nil {
		t.Fatal(err)
	}
	j = f.cache.sync.launch(k, true)
	<-j.Done()
	if err := j.Err(); err != nil {
		t.Fatal(err)
	}
	if st, err = f.cache.Status(ctx, "alice", svc, node); err != nil || len(st) != 1 || !st[0].Fresh || !has() {
		t.Fatalf("after a sync with items stored again: %+v %v, item cached %v", st, err, has())
	}
}

// TestFailedItemsWriteEndsProbe: a notified item with a publisher, on a
// service not known yet to carry publishers in its items answers, keeps
// its node off the cache until that is learned (one probe); when the
// write fails the probe still runs and ends the wait: the node is not kept
// off the cache for good.
func TestFailedItemsWriteEndsProbe(t *testing.T) {
	f, svc, node := cachedNode(t, "prosody", 3)
	ctx := ctxT(t)
	k := nodeKey{"alice", svc, node}
	n, ok := f.cache.nodes.get(k)
	if !ok {
		t.Fatal("node not cached")
	}
	f.cache.learn.learn(ctx, n.profileID, svc, func(b *behaviour) { b.PublisherInResults = "" })

	// The transaction fails at its commit (everything before it, the
	// probe's start included, went through): an inserted item adds a row
	// breaking a deferred foreign key.
	failCommits(t, f, "INSERT")
	it := wire.Item{ID: "it-new", Publisher: "alice@localhost", Payload: payload(7)}
	if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{it}, nil, false)); err == nil || !strings.Contains(err.Error(), "commit") {
		t.Fatalf("the items write did not fail at its commit: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); f.cache.learn.isProbing(k); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node is still kept off the cache for a probe 30 s after its write failed")
		}
	}
	if got := f.cache.learn.get(ctx, n.profileID, svc).PublisherInResults; got == "" {
		t.Error("the probe learned nothing")
	}
}

// TestRolledBackWriteNotLogged: what a writer transaction logs is logged
// once it committed: a trim over cache.item_limit in a write that then
// fails at its commit is not reported (the items are all still there).
func TestRolledBackWriteNotLogged(t *testing.T) {
	logs := &testsvc.LogBuffer{}
	f := newFixture(t, servers.Use(t, "prosody"), fixtureOpts{params: map[string]string{KeyItemLimit: "3"}, logs: logs}, "alice")
	ctx := ctxT(t)
	svc, node := f.nodeOn(t, "alice", syncPrefix)
	f.publish(t, "alice", svc, node, 0, 3)
	mustGet(t, f, xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	f.waitState(t, "alice", svc, node, true, StateComplete)
	k := nodeKey{"alice", svc, node}

	stop := failCommits(t, f, "INSERT")
	const dropped = "oldest items dropped"
	it := wire.Item{ID: "it-new", Publisher: "alice@localhost", Payload: payload(7)}
	if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{it}, nil, false)); err == nil || !strings.Contains(err.Error(), "commit") {
		t.Fatalf("the items write did not fail at its commit: %v", err)
	}
	if strings.Contains(logs.String(), dropped) {
		t.Errorf("a trim rolled back was logged:\n%s", logs)
	}
	stop()
	if err := f.cache.w.do(ctx, itemsOp(k, []wire.Item{it}, nil, false)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), dropped) {
		t.Errorf("the committed trim was not logged:\n%s", logs)
	}
}

// TestNoLogInWriterTx: no code running inside a writer transaction (a
// function taking a *wtx, and what it defines) logs but through
// t.afterwards or t.unlessCommitted: the transaction may roll back, and a
// log line would tell of a write that never happened.
func TestNoLogInWriterTx(t *testing.T) {
	fs := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	isWtx := func(ft *ast.FuncType) bool {
		for _, p := range ft.Params.List {
			if st, ok := p.Type.(*ast.StarExpr); ok {
				if id, ok := st.X.(*ast.Ident); ok && id.Name == "wtx" {
					return true
				}
			}
		}
		return false
	}
	logCalls := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true, "Log": true}
	var walk func(n ast.Node, inTx bool)
	walk = func(n ast.Node, inTx bool) {
		ast.Inspect(n, func(m ast.Node) bool {
			switch x := m.(type) {
			case nil:
				return false
			case *ast.FuncDecl:
				if x.Body != nil {
					walk(x.Body, isWtx(x.Type))
				}
				return false
			case *ast.FuncLit:
				walk(x.Body, inTx || isWtx(x.Type))
				return false
			case *ast.CallExpr:
				s, ok := x.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if s.Sel.Name == "afterwards" || s.Sel.Name == "unlessCommitted" {
					return false // run once the transaction's fate is known
				}
				if inTx && logCalls[s.Sel.Name] {
					t.Errorf("%s: logs inside a writer transaction (use t.afterwards)", fs.Position(x.Pos()))
				}
			}
			return true
		})
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fs, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			walk(d, false)
		}
	}
}

// TestFailedOwnPurgeNotFresh: the profile's own purge, done on the
// service, whose write fails in the cache leaves the node not fresh (it
// stayed fresh with the purged items).
func TestFailedOwnPurgeNotFresh(t *testing.T) {
	f, svc, node := cachedNode(t, "prosody", 3)
	ctx := ctxT(t)
	failCommits(t, f, "DELETE")
	// The service purges; the cache's write of it fails (its error is the
	// observer's, not the purge's).
	_ = f.c.PurgeNode(ctx, xep0060.NodeRequest{Profile: "alice", Service: svc, Node: node})
	st := f.waitState(t, "alice", svc, node, false, StateComplete, StateInProgress, StateError)
	if st.Fresh {
		t.Fatalf("the node is fresh after its purge failed to be stored: %+v", st)
	}
	page, err := f.c.Items(ctx, &xep0060.ItemsRequest{Profile: "alice", Service: svc, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if page.FromCache || len(page.Items) != 0 {
		t.Errorf("after the purge: from_cache=%v, %d items", page.FromCache, len(page.Items))
	}
}

// failCommits makes every cache transaction that does op (INSERT or
// DELETE) on pubsub_items fail at its commit (everything before it went
// through): the row change adds a row breaking a deferred foreign key.
// It returns what ends it (also done when the test ends).
func failCommits(t *testing.T, f *fixture, op string) (stop func()) {
	t.Helper()
	db := f.host.Store.DB
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS test_parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE IF NOT EXISTS test_child (pid INTEGER REFERENCES test_parent(id) DEFERRABLE INITIALLY DEFERRED)`,
		`CREATE TRIGGER test_fail_commit AFTER ` + op + ` ON pubsub_items BEGIN INSERT INTO test_child VALUES (-1); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	stop = func() {
		if _, err := db.Exec(`DROP TRIGGER IF EXISTS test_fail_commit`); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return stop
}
