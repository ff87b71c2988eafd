package pubsubcache

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.org/backend/core"
	"example.org/backend/core/analysers"
	"example.org/backend/core/connections"
	"example.org/backend/core/profiles"
	"example.org/backend/core/secrets"
	"example.org/backend/core/storage"
	"example.org/backend/internal/testsvc"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/plugins/xep0060/wire"
)

var servers = testsvc.SharedXMPP{Accounts: map[string]string{
	"alice": "alice-pw", "bob": "bob-pw",
}}

var (
	sharedPG    *testsvc.Postgres
	sharedPGErr error
	pgOnce      sync.Once
)

// postgres starts the package's PostgreSQL cluster on first use.
func postgres(t testing.TB) *testsvc.Postgres {
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sharedPG, sharedPGErr = testsvc.StartPostgres(ctx)
	})
	testsvc.RequireOrSkip(t, sharedPGErr)
	return sharedPG
}

func TestMain(m *testing.M) {
	code := m.Run()
	servers.StopAll()
	if sharedPG != nil {
		if err := sharedPG.Stop(); err != nil && code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

var kinds = []string{testsvc.KindProsody, testsvc.KindEjabberd}

// The test analysers: nodes "urn:test:sync…" are synced and parsed by
// testParser; "urn:test:plain…" are analysed but not synced.
const (
	syncPrefix  = "urn:test:sync"
	plainPrefix = "urn:test:plain"
)

// testProvider parses items (counting calls) unless down.
type testProvider struct {
	calls atomic.Int64
	// failing makes every batch fail (a plugin that crashed mid-batch).
	failing atomic.Bool
	// hang, when set, makes Parse block until it is closed (a hung
	// plugin); hung counts the calls blocked.
	hang atomic.Pointer[chan struct{}]
	hung atomic.Int64
}

func (tp *testProvider) Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
	tp.calls.Add(1)
	if h := tp.hang.Load(); h != nil {
		tp.hung.Add(1)
		select {
		case <-*h:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if tp.failing.Load() {
		return nil, errors.New("plugin exited during the call")
	}
	out := make([]sdk.ParseResult, len(req.Items))
	for i, it := range req.Items {
		data, _ := json.Marshal(map[string]any{"id": it.ID, "size": len(it.Payload)})
		out[i] = sdk.ParseResult{ID: it.ID, JSON: data, SearchText: "parsed " + it.ID}
	}
	return out, nil
}

func (tp *testProvider) Match(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	return sdk.MatchResult{}, nil
}

// fixture is a host with the connection manager, the pubsub plugin, the
// cache, and connected profiles named after their accounts.
type fixture struct {
	srv      *testsvc.XMPPServer
	host     *core.Host
	m        *connections.Manager
	ps       *profiles.Service
	cache    *Plugin
	c        *xep0060.Client
	provider *testProvider
	requests *atomic.Int64
}

type fixtureOpts struct {
	params   map[string]string
	pageSize int
	store    storage.Config
	// via: the profiles connect through this proxy (cut it to cut them).
	via *testsvc.Proxy
	// sessions, when set, wraps the sessions the plugins see.
	sessions func(core.Sessions) core.Sessions
	// logs, when set, receives the fixture's logs (text, info level and
	// up; with CACHE_TEST_LOG, stderr gets them too, debug level).
	logs io.Writer
}

func newFixture(t testing.TB, srv *testsvc.XMPPServer, o fixtureOpts, users ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(cmp.Or(o.logs, io.Discard), nil))
	if os.Getenv("CACHE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, cmp.Or(o.logs, io.Discard)), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx := context.Background()
	cfg := o.store
	if cfg.Driver == "" {
		cfg = storage.Config{DataDir: dir}
	}
	store, err := storage.Open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := core.NewHost(log, "test")
	h.Store = store
	if h.Analysers, err = analysers.Open(ctx, store, log); err != nil {
		t.Fatal(err)
	}
	tp := &testProvider{}
	err = h.Analysers.Declare(ctx, "testplugin", []sdk.Analyser{
		{Name: "test-sync", Type: "test", NodePrefix: syncPrefix, ToSync: true, Parser: "p"},
		{Name: "test-plain", Type: "plain", NodePrefix: plainPrefix},
	}, tp)
	if err != nil {
		t.Fatal(err)
	}
	if h.Secrets, err = secrets.OpenBox(dir); err != nil {
		t.Fatal(err)
	}
	if err := profiles.DeclareConnection(h.Params); err != nil {
		t.Fatal(err)
	}
	ps := profiles.New(h, nil)
	h.SetParamSource(ps)
	xp := xep0060.New()
	cache := New(xp)
	if o.pageSize > 0 {
		cache.pageSize = o.pageSize
	}
	plugins := core.NewPlugins(h, xp, cache)
	m := connections.New(h, ps, plugins, connections.Options{PingInterval: -1, Timeout: 20 * time.Second,
		Backoff: func(int) time.Duration { return 100 * time.Millisecond }})
	h.Sessions = m
	if o.sessions != nil {
		h.Sessions = o.sessions(m)
	}
	if err := plugins.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, host: h, m: m, ps: ps, cache: cache, c: xp.Client(), provider: tp,
		requests: h.Counters.Get(core.CounterPubsubItemsRequests)}
	t.Cleanup(func() {
		m.Close(context.Background())
		plugins.Close(context.Background())
	})
	for _, u := range users {
		params := map[string]string{profiles.KeyHost: srv.Host, profiles.KeyPort: strconv.Itoa(srv.Port), profiles.KeyCAFile: srv.CAFile}
		if o.via != nil {
			params[profiles.KeyHost], params[profiles.KeyPort] = "127.0.0.1", strconv.Itoa(o.via.Port())
		}
		for k, v := range o.params {
			params[k] = v
		}
		_, err := ps.Create(ctx, profiles.CreateRequest{Name: u, JID: u + "@" + srv.Domain, Password: u + "-pw", Params: params})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Connect(ctx, u); err != nil {
			t.Fatalf("connect %s: %v", u, err)
		}
	}
	return f
}

func (f *fixture) jid(user string) string { return user + "@" + f.srv.Domain }

// uniq returns a fresh node name.
func uniq(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// nodeOn creates a node: the profile's PEP service on Prosody, the pubsub
// component on ejabberd.
func (f *fixture) nodeOn(t testing.TB, owner, prefix string) (service, node string) {
	t.Helper()
	node = uniq(prefix)
	config := map[string][]string{"pubsub#max_items": {"max"}}
	service = f.srv.PubSub
	if f.srv.Kind == testsvc.KindProsody {
		service = f.jid(owner)
	} else {
		config["pubsub#publish_model"] = []string{"open"}
	}
	if err := f.c.CreateNode(ctxT(t), xep0060.NodeRequest{Profile: owner, Service: service, Node: node, Options: config}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	return service, node
}

// payload returns the i-th test payload: prefixes, CDATA, entities, mixed
// content, non-ASCII text.
func payload(i int) []byte {
	switch i % 4 {
	case 0:
		return fmt.Appendf(nil, "<entry xmlns='http://www.w3.org/2005/Atom'><title>post %d</title><content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>a <b>bold</b> &amp; <i>é%d</i> tail</div></content></entry>", i, i)
	case 1:
		return fmt.Appendf(nil, "<x:data xmlns:x='urn:test:prefixed' x:attr='v&apos;%d'><x:v>%d &lt; %d</x:v><![CDATA[raw <cdata> & %d]]></x:data>", i, i, i+1, i)
	case 2:
		return fmt.Appendf(nil, "<note xmlns='urn:test:note'>mixed <em>%d</em> text &#x263A; and &quot;quotes&quot;</note>", i)
	default:
		return fmt.Appendf(nil, "<n xmlns='urn:test:n' a=\"%d\"/>", i)
	}
}

// publish publishes items id → payload(i).
func (f *fixture) publish(t testing.TB, profile, service, node string, from, to int) {
	t.Helper()
	ctx := ctxT(t)
	for i := from; i < to; i++ {
		if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: profile, Service: service, Node: node, ID: itemID(i), Payload: payload(i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func itemID(i int) string { return fmt.Sprintf("it-%04d", i) }

// waitState waits until the node reaches one of the states (and, when
// fresh, is fresh).
func (f *fixture) waitState(t testing.TB, profile, service, node string, fresh bool, states ...State) NodeStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last []NodeStatus
	for time.Now().Before(deadline) {
		st, err := f.cache.Status(context.Background(), profile, service, node)
		if err != nil {
			t.Fatal(err)
		}
		last = st
		if len(st) == 1 {
			for _, s := range states {
				// A settled state is one no sync is changing any more
				// (a follow-up sync may still be running): requests
				// counted after this are the caller's alone.
				settled := s == StateInProgress || s == StateNever || f.cache.sync.running(nodeKey{profile, service, node}) == nil
				if st[0].State == string(s) && (!fresh || st[0].Fresh) && settled {
					return st[0]
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s never reached %v (fresh=%v): %+v", node, states, fresh, last)
	return NodeStatus{}
}

// idsOf joins item ids.
func idsOf(items []wire.Item) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return strings.Join(out, ",")
}

// sameItems compares ids, order, publishers and payload bytes.
func sameItems(a, b []wire.Item) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d items vs %d: %s vs %s", len(a), len(b), idsOf(a), idsOf(b))
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Publisher != b[i].Publisher || string(a[i].Payload) != string(b[i].Payload) {
			return fmt.Sprintf("item %d: %s/%s %q vs %s/%s %q", i, a[i].ID, a[i].Publisher, a[i].Payload, b[i].ID, b[i].Publisher, b[i].Payload)
		}
	}
	return ""
}

// counted runs an items request and returns the page and how many items
// requests went to the service for it (not the check of a checked read,
// on a node whose retractions are notified to no one: see idsMatch).
func (f *fixture) counted(t testing.TB, req xep0060.ItemsRequest) (*xep0060.ItemsPage, int64) {
	t.Helper()
	sent := func() int64 { return f.requests.Load() - f.cache.checkRequests.Load() }
	before := sent()
	page, err := f.c.Items(ctxT(t), &req)
	if err != nil {
		t.Fatalf("items %+v: %v", req, err)
	}
	return page, sent() - before
}

// cachedCounted is counted for a request the cache should answer. A
// notification still on its way, or a background request of the cache,
// makes a call go to (or coincide with) the service for a moment, which is
// correct: it asks again, for a few seconds, until an answer came from the
// cache with no request sent.
func (f *fixture) cachedCounted(t testing.TB, req xep0060.ItemsRequest) (*xep0060.ItemsPage, int64) {
	t.Helper()
	return f.countedUntil(t, req, 0, true)
}

// liveCounted is counted for a request that goes to the service: it asks
// again while a background request of the cache coincided with it.
func (f *fixture) liveCounted(t testing.TB, req xep0060.ItemsRequest) (*xep0060.ItemsPage, int64) {
	t.Helper()
	return f.countedUntil(t, req, 1, false)
}

// countedUntil repeats counted for up to 10 s until sent requests went to
// the service and the answer's from_cache is fromCache; it returns the last
// answer.
func (f *fixture) countedUntil(t testing.TB, req xep0060.ItemsRequest, sent int64, fromCache bool) (*xep0060.ItemsPage, int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, n := f.counted(t, req)
		if n == sent && page.FromCache == fromCache || time.Now().After(deadline) {
			return page, n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitServed waits until a request on the node is answered from the cache.
func (f *fixture) waitServed(t testing.TB, profile, service, node string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		page, _ := f.c.Items(ctxT(t), &xep0060.ItemsRequest{Profile: profile, Service: service, Node: node, MaxItems: 1})
		if page != nil && page.FromCache {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	req := &xep0060.ItemsRequest{Profile: profile, Service: service, Node: node, MaxItems: 1}
	st, _ := f.cache.Status(context.Background(), profile, service, node)
	t.Fatalf("node %s is never answered from the cache: %s; %+v", node, f.cache.explain(req), st)
}

// explain says why the cache decides as it does on req.
func (p *Plugin) explain(req *xep0060.ItemsRequest) string {
	k := nodeKey{req.Profile, req.Service, req.Node}
	n, known := p.nodes.get(k)
	pp := p.params.of(context.Background(), req.Profile)
	f, err := p.facts(context.Background(), k, n, known, req, pp)
	if err != nil {
		return err.Error()
	}
	v := decide(n, known, req, f, time.Now())
	return fmt.Sprintf("%s (node %+v, facts %+v, sync running %v, check running %v)", v.why, n, f, p.sync.running(k) != nil, p.sync.checking(k) != nil)
}
