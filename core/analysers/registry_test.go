package analysers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"example.org/backend/core/storage"
	"example.org/backend/ent"
	sdk "example.org/backend/plugin-sdk"
)

func openStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), storage.Config{DataDir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var microblog = sdk.Analyser{Name: " XEP-0277 ", Type: "blog", NodePrefix: "urn:xmpp:microblog:0", PayloadNamespace: "http://www.w3.org/2005/Atom",
	ToSync: true, Parser: "atom", IndexedPaths: []string{"tags", "published"}, Match: true}

type fakeProvider struct{ parsed int }

func (f *fakeProvider) Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
	f.parsed += len(req.Items)
	out := make([]sdk.ParseResult, len(req.Items))
	for i, it := range req.Items {
		out[i] = sdk.ParseResult{ID: it.ID, JSON: []byte(`{"ok":true}`)}
	}
	return out, nil
}

func (f *fakeProvider) Match(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	return sdk.MatchResult{Subtype: "comment"}, nil
}

func TestDeclarePersistAndVersion(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	store := openStore(t, dir)
	r, err := Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != 0 {
		t.Errorf("empty registry version %d", r.Version())
	}
	p := &fakeProvider{}
	if err := r.Declare(ctx, "microblog", []sdk.Analyser{microblog}, p); err != nil {
		t.Fatal(err)
	}
	v1 := r.Version()
	if v1 != 1 {
		t.Errorf("version after the first declaration = %d", v1)
	}
	a, ok := r.Lookup("xep-0277")
	if !ok || a.Owner != "microblog" || a.Name != "xep-0277" {
		t.Fatalf("lookup = %+v %v", a, ok)
	}
	// Declaring the same again (a plugin restart) changes nothing.
	if err := r.Declare(ctx, "microblog", []sdk.Analyser{microblog}, p); err != nil {
		t.Fatal(err)
	}
	if r.Version() != v1 {
		t.Errorf("re-declaration bumped the version to %d", r.Version())
	}
	// Down is a state, not a removal.
	r.Down("microblog")
	if _, ok := r.Lookup("xep-0277"); !ok || r.Available("xep-0277") {
		t.Error("a down provider removed its analyser, or is still available")
	}
	if _, err := r.Parse(ctx, sdk.ParseRequest{Analyser: "xep-0277", Items: []sdk.Item{{ID: "1"}}}); !errors.Is(err, ErrProviderDown) {
		t.Errorf("parse while down: %v", err)
	}
	store.Close()

	// After a daemon restart the set is known before the plugin starts.
	store = openStore(t, dir)
	defer store.Close()
	r, err = Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != v1 {
		t.Errorf("version after restart = %d, want %d", r.Version(), v1)
	}
	a, ok = r.Lookup("XEP-0277")
	if !ok || !a.ToSync || a.Parser != "atom" || len(a.IndexedPaths) != 2 || a.PayloadNamespace == "" {
		t.Fatalf("persisted declaration = %+v", a)
	}
	if r.Available("xep-0277") {
		t.Error("available before its plugin started")
	}
	r.Up("microblog", p)
	res, err := r.Parse(ctx, sdk.ParseRequest{Analyser: "xep-0277", Items: []sdk.Item{{ID: "1"}, {ID: "2"}}})
	if err != nil || len(res) != 2 || p.parsed != 2 {
		t.Errorf("parse = %v %v", res, err)
	}
	// A new declaration (plugin upgrade) changes the version; removal too.
	changed := microblog
	changed.IndexedPaths = []string{"tags"}
	if err := r.Declare(ctx, "microblog", []sdk.Analyser{changed}, p); err != nil {
		t.Fatal(err)
	}
	if r.Version() != v1+1 {
		t.Errorf("version after a changed declaration = %d", r.Version())
	}
	if err := r.Remove(ctx, "microblog"); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup("xep-0277"); ok || r.Version() != v1+2 {
		t.Errorf("after removal: version %d", r.Version())
	}
}

func TestMatchOrderAndConflicts(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	r, _ := Open(ctx, store, nil)
	decls := []sdk.Analyser{
		{Name: "b-generic", Type: "any", NodePrefix: "urn:"},
		{Name: "a-generic", Type: "any", NodePrefix: "urn:"},
		{Name: "blog", Type: "blog", NodePrefix: "urn:xmpp:microblog:0", Priority: 10},
		{Name: "atom", Type: "feed", PayloadNamespace: "http://www.w3.org/2005/Atom", Priority: 5},
	}
	if err := r.Declare(ctx, "p1", decls, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ node, ns, want string }{
		{"urn:xmpp:microblog:0", "http://www.w3.org/2005/Atom", "blog"},
		{"other", "http://www.w3.org/2005/Atom", "atom"},
		{"urn:x", "", "a-generic"}, // same priority: by name
		{"plain", "", ""},
	}
	for _, c := range cases {
		a, ok := r.Match(c.node, c.ns, nil)
		if got := a.Name; (c.want == "" && ok) || got != c.want {
			t.Errorf("match(%q, %q) = %q, want %q", c.node, c.ns, got, c.want)
		}
	}
	// A node without items: by prefix, whatever the namespace declared.
	for _, c := range []struct{ node, want string }{{"urn:xmpp:microblog:0", "blog"}, {"urn:x", "a-generic"}, {"other", ""}} {
		a, ok := r.MatchEmpty(c.node, nil)
		if got := a.Name; (c.want == "" && ok) || got != c.want {
			t.Errorf("match empty %q = %q, want %q", c.node, got, c.want)
		}
	}
	if a, _ := r.Match("urn:xmpp:microblog:0", "", func(n string) bool { return n != "blog" }); a.Name != "a-generic" {
		t.Errorf("allowed filter ignored: %q", a.Name)
	}
	if err := r.Declare(ctx, "p2", []sdk.Analyser{{Name: "BLOG", Type: "x", NodePrefix: "y"}}, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("conflict: %v", err)
	}
	for _, bad := range []sdk.Analyser{{Name: "", Type: "t", NodePrefix: "n"}, {Name: "x", NodePrefix: "n"}, {Name: "x", Type: "t"}} {
		if err := r.Declare(ctx, "p3", []sdk.Analyser{bad}, nil); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if got := r.Owners(); len(got) != 1 || got[0] != "p1" {
		t.Errorf("owners = %v (a refused declaration must write nothing)", got)
	}
}

func TestRefine(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	defer store.Close()
	r, _ := Open(ctx, store, nil)
	plain := sdk.Analyser{Name: "plain", Type: "t", NodePrefix: "p"}
	if err := r.Declare(ctx, "o", []sdk.Analyser{microblog, plain}, &fakeProvider{}); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Refine(ctx, sdk.MatchRequest{Analyser: "xep-0277"}); err != nil || res.Subtype != "comment" {
		t.Errorf("refine with a match callback: %+v %v", res, err)
	}
	if res, err := r.Refine(ctx, sdk.MatchRequest{Analyser: "plain"}); err != nil || res != (sdk.MatchResult{}) {
		t.Errorf("refine without one: %+v %v", res, err)
	}
}

// TestProviderUp: waiters are woken when a provider is declared or comes
// back, not when one goes down.
func TestProviderUp(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, openStore(t, t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch := r.ProviderUp()
	p := &fakeProvider{}
	if err := r.Declare(ctx, "microblog", []sdk.Analyser{microblog}, p); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("declaring a provider woke nobody")
	}
	ch = r.ProviderUp()
	r.Down("microblog")
	if closed(ch) {
		t.Error("a provider going down woke the waiters")
	}
	r.Up("microblog", p)
	if !closed(ch) {
		t.Error("a provider coming back woke nobody")
	}
	if closed(r.ProviderUp()) {
		t.Error("a new waiter is woken by a past event")
	}
}

// TestDeclareWhileATransactionReadsTheRegistry: a write transaction that
// reads the registry (the cache's storing transactions ask for the indexed
// paths) while a plugin declares its analysers completes, and so does the
// declaration: the registry's lock is not held while the declaration waits
// for the database (it was, and both waited until SQLite's busy timeout
// failed the declaration, about 40 s later).
func TestDeclareWhileATransactionReadsTheRegistry(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, t.TempDir())
	r, err := Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		first := true
		txDone <- store.WithTx(ctx, func(tx *ent.Tx) error {
			if first {
				first = false
				close(inTx)
				<-release
			}
			_ = r.All()
			_, err := tx.AnalyserSet.Query().Count(ctx)
			return err
		})
	}()
	<-inTx
	declared := make(chan error, 1)
	go func() { declared <- r.Declare(ctx, "microblog", []sdk.Analyser{microblog}, &fakeProvider{}) }()
	// Let the declaration start waiting for the database (if it has not yet,
	// the test passes without proving anything, never fails wrongly).
	time.Sleep(200 * time.Millisecond)
	close(release)
	if err := <-txDone; err != nil {
		t.Errorf("transaction reading the registry: %v", err)
	}
	if err := <-declared; err != nil {
		t.Errorf("declaration: %v", err)
	}
	if _, ok := r.Lookup("xep-0277"); !ok {
		t.Error("declared analyser missing")
	}
}
