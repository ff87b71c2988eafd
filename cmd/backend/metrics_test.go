package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"example.org/backend/internal/testsvc"
)

// scrape reads /metrics on the daemon's socket: family name → family.
func scrape(t testing.TB, e *env) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := unixHTTP(e.socket).Get("http://backend/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("/metrics: %s %s", res.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series returns the family's series as "labels value" lines (histograms:
// their count), sorted, for messages and comparisons.
func series(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		v := 0.0
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out = append(out, "{"+strings.Join(labels, ",")+"} "+strconv.FormatFloat(v, 'g', -1, 64))
	}
	sort.Strings(out)
	return out
}

// value is the value of the family's series whose labels include want
// (name=value pairs), summed; histograms count observations.
func value(f *dto.MetricFamily, want ...string) float64 {
	total := 0.0
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// TestMetricsAfterSession scrapes /metrics when the daemon starts and after
// a scripted session (a failed connection, a connection through a proxy,
// publications, a sync, cached and uncached gets, a plugin restart, a cut
// stream and its reconnection) and checks that every family the core
// declares moved, with bounded labels and real HELP texts; then that the
// TCP listener serves /metrics only with the token.
func TestMetricsAfterSession(t *testing.T) {
	srv := startXMPP(t, testsvc.KindProsody, nil)
	proxy := testsvc.ProxyFor(t, srv)
	e := newEnv(t)
	tcpPort := freePort(t)
	// Plain HTTP on loopback (TLS on the listener is TestTCPListenerTLS's).
	e.vars = append(e.vars, "ALICE_PW=alice-pw", fmt.Sprintf("BACKEND_API_TCP_ADDRESS=127.0.0.1:%d", tcpPort), "BACKEND_API_TCP_PLAINTEXT=loopback")
	e.serve(t)
	waitFor(t, "microblog running", func() bool { return microblogRunning(t, e) })
	before := scrape(t, e)

	closed := freePort(t)
	for _, p := range []struct {
		name string
		port int
	}{{"alice", proxy.Port()}, {"ghost", closed}} {
		if out, errs, code := e.cli(t, "profile", "create", p.name, "--jid", "alice@"+srv.Domain, "--password-env", "ALICE_PW",
			"--host", srv.Host, "--port", strconv.Itoa(p.port), "--ca-file", srv.CAFile); code != exitOK {
			t.Fatalf("profile create %s: %d %s %s", p.name, code, out, errs)
		}
	}
	if _, _, code := e.cli(t, "profile", "connect", "ghost"); code != exitFailed {
		t.Fatalf("connect to a closed port: exit %d", code)
	}
	if out, errs, code := e.cli(t, "profile", "connect", "alice"); code != exitOK {
		t.Fatalf("profile connect: %d %s %s", code, out, errs)
	}
	node := "urn:xmpp:microblog:0"
	for i := 1; i <= 3; i++ {
		entry := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>Metrics post %d</title><published>2026-02-0%dT10:00:00Z</published></entry>", i, i)
		if out, errs, code := e.cliIn(t, entry, "pubsub", "publish", "-p", "alice", "-n", node, "-i", fmt.Sprintf("m%d", i),
			"--option", "pubsub#max_items=max"); code != exitOK {
			t.Fatalf("publish: %d %s %s", code, out, errs)
		}
	}
	e.cli(t, "pubsub", "items", "-p", "alice", "-n", "urn:test:metrics-none") // a miss (the node does not even exist)
	if out, errs, code := e.cli(t, "cache", "sync", "-p", "alice", "-n", node, "--wait"); code != exitOK {
		t.Fatalf("cache sync: %d %s %s", code, out, errs)
	}
	waitServedCLI(t, e, "-n", node)
	itemsJSON(t, e, "-n", node)
	itemsJSON(t, e, "-n", node, "--no-cache")
	if out, errs, code := e.cli(t, "plugins", "restart", "microblog"); code != exitOK {
		t.Fatalf("plugins restart: %d %s %s", code, out, errs)
	}
	// A cut stream: the session reconnects by itself.
	accepted := proxy.Accepted()
	proxy.CutAll()
	waitFor(t, "the reconnection", func() bool {
		return value(scrape(t, e)["backend_session_connection_attempts_total"], "kind=reconnect", "outcome=ok") >= 1 && proxy.Accepted() > accepted
	})
	after := scrape(t, e)

	// Every family of the core, and how it must have moved.
	type check struct {
		family string
		labels []string // the series that must have grown (a subset of labels)
	}
	checks := []check{
		{"backend_api_request_duration_seconds", []string{"procedure=/backend.v2.PubSubService/Publish", "code=ok"}},
		{"backend_api_request_duration_seconds", []string{"procedure=/backend.v2.SessionService/Connect", "code=unavailable"}},
		{"backend_bus_dispatch_duration_seconds", []string{"point=pubsub.items.get", "kind=intercept", "outcome=answer"}},
		{"backend_bus_dispatch_duration_seconds", []string{"point=session.connected", "kind=observe"}},
		{"backend_plugin_call_duration_seconds", []string{"plugin=microblog", "method=parse", "outcome=ok"}},
		{"backend_plugin_call_duration_seconds", []string{"plugin=microblog", "method=describe", "outcome=ok"}},
		{"backend_plugin_restarts_total", []string{"plugin=microblog"}},
		{"backend_sessions", []string{"state=connected"}},
		{"backend_session_connection_attempts_total", []string{"kind=first", "outcome=ok"}},
		{"backend_session_connection_attempts_total", []string{"kind=first", "outcome=error"}},
		{"backend_session_connection_attempts_total", []string{"kind=reconnect", "outcome=ok"}},
		{"backend_session_streams_lost_total", nil},
		{"backend_pubsub_items_requests_total", nil},
		{"backend_iq_sent_total", nil},
		{"backend_cache_hits_total", nil},
		{"backend_cache_misses_total", nil},
		{"backend_cache_bypasses_total", nil},
		// backend_cache_stale_answers_total moves while a profile is
		// offline: TestCacheStaleMetric-like checks belong to the cache.
		{"backend_cache_sync_duration_seconds", []string{"outcome=complete"}},
		{"backend_cache_answers_total", []string{"outcome=hit"}},
		{"backend_cache_answers_total", []string{"outcome=bypass"}},
		{"backend_cache_nodes", []string{"state=complete"}},
	}
	// Gauges of queues that are empty once the session is over: present.
	for _, family := range []string{"backend_cache_items_pending_parse", "backend_cache_writer_queue_depth", "backend_cache_parse_backlog_items"} {
		if after[family] == nil {
			t.Errorf("%s missing from /metrics", family)
		}
	}
	for _, c := range checks {
		b, a := before[c.family], after[c.family]
		if a == nil {
			t.Errorf("%s missing from /metrics", c.family)
			continue
		}
		if value(a, c.labels...) <= value(b, c.labels...) {
			t.Errorf("%s%v did not move: before %v, after %v", c.family, c.labels, series(b), series(a))
		}
	}
	// The status counters of DESIGN §9 equal their metrics.
	out, _, _ := e.cli(t, "status", "-o", "json")
	st := decode(t, out)
	for name, v := range st["counters"].(map[string]any) {
		f := scrape(t, e)["backend_"+name+"_total"]
		if f == nil || value(f) < v.(float64) {
			t.Errorf("status counter %s=%v: metric %v", name, v, f)
		}
	}
	// The build info names the version status reports.
	if bi := after["backend_build_info"]; bi == nil || value(bi, "version="+st["version"].(string)) != 1 {
		t.Errorf("backend_build_info = %v, status version %v", bi, st["version"])
	}
	// Bounded labels and real HELP texts on every backend_ family.
	for name, f := range after {
		if !strings.HasPrefix(name, "backend_") {
			continue
		}
		if h := f.GetHelp(); len(strings.Fields(h)) < 5 || strings.Contains(h, "(see backend status)") {
			t.Errorf("%s: HELP %q", name, h)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "profile", "node", "item", "jid", "service":
					t.Errorf("%s carries label %s=%s", name, l.GetName(), l.GetValue())
				}
				switch v := l.GetValue(); {
				case strings.Contains(v, "alice"), strings.Contains(v, "ghost"), v == node, v == "m1", v == "m2", v == "m3":
					t.Errorf("%s: a label names a profile, a node or an item: %s=%s", name, l.GetName(), v)
				}
			}
		}
	}

	// On the TCP listener, /metrics needs the token.
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", tcpPort)
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics over TCP without the token: %s", res.Status)
	}
	token, err := os.ReadFile(e.dir + "/data/backend/api.token")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "backend_sessions{") {
		t.Errorf("/metrics over TCP with the token: %s", res.Status)
	}
	// Every family is documented.
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range after {
		if strings.HasPrefix(name, "backend_") && !strings.Contains(string(ops), "`"+name+"`") {
			t.Errorf("%s is not in the metrics table of docs/operations.md", name)
		}
	}
	t.Logf("/metrics after the session (backend_ families, histograms as counts):")
	var names []string
	for name := range after {
		if strings.HasPrefix(name, "backend_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		t.Logf("  %s %v", name, series(after[name]))
	}
}
