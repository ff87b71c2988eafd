package pubsubcache

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
	"example.org/backend/plugins/xep0060"
)

// countingSessions are the sessions the plugins see, counting the IQs one
// profile sends and the bytes of their answers (re-encoded).
type countingSessions struct {
	core.Sessions
	profile     string
	iqs, rbytes atomic.Int64
}

func (c *countingSessions) Session(profile string) (core.XMPP, error) {
	s, err := c.Sessions.Session(profile)
	if err != nil || profile != c.profile {
		return s, err
	}
	return countingXMPP{s, c}, nil
}

type countingXMPP struct {
	core.XMPP
	c *countingSessions
}

func (x countingXMPP) SendIQRaw(ctx context.Context, to, typ, payloadXML string) (*stanza.IQ, error) {
	res, err := x.XMPP.SendIQRaw(ctx, to, typ, payloadXML)
	x.c.iqs.Add(1)
	if res != nil {
		if b, merr := xml.Marshal(res); merr == nil {
			x.c.rbytes.Add(int64(len(b)))
		}
	}
	return res, err
}

// BenchmarkReconcileDiff: 20 nodes × 500 items (the test payloads, about
// 100 bytes, and the same padded to 1 KiB) reconciled after a
// disconnection without resumption, by difference and by the whole
// listing (the same run, interleaved), with nothing changed offline, 1 %
// of the items added and retracted (3 published, 2 retracted per node),
// and 1 % updated (5 re-published with another payload per node). Per
// case and method: IQs and items requests per node, bytes of answers per
// node (KiB) and the time from the connection to every node complete and
// fresh (ms), and the ratios diff/full of bytes and time. On ejabberd the
// difference is cache.reconcile=ids for additions and retractions; for
// updates it is what cache.reconcile=exact does there (the whole
// listing: updates in place are invisible to anything less).
func BenchmarkReconcileDiff(b *testing.B) {
	const nodes, size, churn = 20, 500, 5
	for _, bc := range []struct {
		kind string
		pad  int
	}{{kinds[0], 0}, {kinds[0], 1024}, {kinds[1], 0}, {kinds[1], 1024}} {
		kind := bc.kind
		pl := func(i int) []byte { return paddedPayload(i, bc.pad) }
		b.Run(fmt.Sprintf("%s/pad=%d", kind, bc.pad), func(b *testing.B) {
			cs := &countingSessions{profile: "alice"}
			f := newFixture(b, servers.Use(b, kind), fixtureOpts{sessions: func(s core.Sessions) core.Sessions {
				cs.Sessions = s
				return cs
			}}, "alice")
			w := f.writer(b)
			ctx := context.Background()
			var svc string
			names := make([]string, nodes)
			for i := range names {
				svc, names[i] = f.nodeOn(b, "alice", plainPrefix)
				publishWith(b, f, "alice", svc, names[i], 0, size, pl)
				if _, err := f.cache.Sync(ctx, "alice", svc, names[i]); err != nil {
					b.Fatal(err)
				}
			}
			for _, n := range names {
				f.waitState(b, "alice", svc, n, true, StateComplete)
			}
			f.learnRepublish(b, svc, names[0], 10)
			next := size // the next new item
			retracted := 0
			upd := 0
			cases := []struct {
				name   string
				diff   string // the mode of the difference
				change func()
			}{
				{"unchanged", reconcileIDs, func() {}},
				{"addret", reconcileIDs, func() {
					for _, n := range names {
						for i := next; i < next+3; i++ {
							if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: n, ID: itemID(i), Payload: pl(i)}); err != nil {
								b.Fatal(err)
							}
						}
						for i := retracted; i < retracted+2; i++ {
							if err := f.c.Retract(ctx, xep0060.RetractRequest{Profile: w, Service: svc, Node: n, ID: itemID(100 + i), Notify: true}); err != nil {
								b.Fatal(err)
							}
						}
					}
					next += 3
					retracted += 2
				}},
				{"updates", reconcileExact, func() {
					for _, n := range names {
						for i := 0; i < churn; i++ {
							id := 300 + (upd*churn+i)%150
							if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: w, Service: svc, Node: n, ID: itemID(id), Payload: pl(10000 + upd*churn + i)}); err != nil {
								b.Fatal(err)
							}
						}
					}
					upd++
				}},
			}
			type total struct {
				iqs, reqs, bytes int64
				dur, after       time.Duration // from the connection; from its end (the login)
				runs             int
				method           string
			}
			totals := map[string]*total{}
			reconcile := func(key, mode string, change func()) {
				if err := f.m.Disconnect(ctx, "alice"); err != nil {
					b.Fatal(err)
				}
				change()
				f.cache.reconcileMode = mode
				iqs, reqs, by := cs.iqs.Load(), f.requests.Load(), cs.rbytes.Load()
				t0 := time.Now()
				if err := f.m.Connect(ctx, "alice"); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				var st NodeStatus
				for _, n := range names {
					st = f.waitState(b, "alice", svc, n, true, StateComplete)
				}
				d := time.Since(t0)
				t := totals[key]
				if t == nil {
					t = &total{}
					totals[key] = t
				}
				t.iqs += cs.iqs.Load() - iqs
				t.reqs += f.requests.Load() - reqs
				t.bytes += cs.rbytes.Load() - by
				t.dur += d
				t.after += time.Since(t1)
				t.runs++
				t.method = strOrNil(st.Method)
			}
			for b.Loop() {
				for _, c := range cases {
					reconcile(c.name+"/diff", c.diff, c.change)
					reconcile(c.name+"/full", reconcileFull, c.change)
				}
			}
			f.cache.reconcileMode = ""
			for _, c := range cases {
				d, full := totals[c.name+"/diff"], totals[c.name+"/full"]
				per := func(v int64, t *total) float64 { return float64(v) / float64(t.runs*nodes) }
				for _, m := range []struct {
					name string
					t    *total
				}{{"diff", d}, {"full", full}} {
					b.ReportMetric(per(m.t.iqs, m.t), c.name+"-"+m.name+"-iq/node")
					b.ReportMetric(per(m.t.reqs, m.t), c.name+"-"+m.name+"-req/node")
					b.ReportMetric(per(m.t.bytes, m.t)/1024, c.name+"-"+m.name+"-KiB/node")
					b.ReportMetric(float64(m.t.dur.Milliseconds())/float64(m.t.runs), c.name+"-"+m.name+"-ms")
					b.ReportMetric(float64(m.t.after.Milliseconds())/float64(m.t.runs), c.name+"-"+m.name+"-after-login-ms")
				}
				b.ReportMetric(float64(d.bytes)/float64(full.bytes), c.name+"-bytes-ratio")
				b.ReportMetric(float64(d.dur)/float64(full.dur), c.name+"-time-ratio")
				b.ReportMetric(float64(d.after)/float64(full.after), c.name+"-after-login-time-ratio")
				b.Logf("%s: %s: method %s (diff) vs %s", kind, c.name, d.method, full.method)
			}
		})
	}
}

// paddedPayload is payload(i), padded to at least pad bytes (a text
// element: a blog entry's size).
func paddedPayload(i, pad int) []byte {
	p := payload(i)
	if len(p) >= pad {
		return p
	}
	return fmt.Appendf(nil, "<padded xmlns='urn:test:pad'>%s<t>%s</t></padded>", p, strings.Repeat("x", pad-len(p)))
}

// publishWith publishes items from..to-1 with payloads pl, 8 at a time.
func publishWith(b *testing.B, f *fixture, profile, service, node string, from, to int, pl func(int) []byte) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Value
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := f.c.Publish(ctx, xep0060.PublishRequest{Profile: profile, Service: service, Node: node, ID: itemID(i), Payload: pl(i)}); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}
