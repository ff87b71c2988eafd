package session

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"gosrc.io/xmpp/stanza"
)

// BenchmarkPingRoundTrip measures a XEP-0199 ping to the server and back
// on loopback (sequential; the figure is the IQ round trip).
func BenchmarkPingRoundTrip(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			srv := benchServer(b, kind)
			cfg := testConfig(srv, "carol", "bench-"+kind)
			cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			s := New(cfg, Handlers{})
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Stop(context.Background()) }()
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.SendIQRaw(ctx, srv.Domain, "get", pingPayload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchServer is useServer for benchmarks.
func benchServer(b *testing.B, kind string) *testsvc.XMPPServer {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var srv *testsvc.XMPPServer
	var err error
	switch kind {
	case testsvc.KindProsody:
		srv, err = prosody.get(func() (*testsvc.XMPPServer, error) { return testsvc.StartProsody(ctx, opts(kind, false)) })
	default:
		srv, err = ejabberd.get(func() (*testsvc.XMPPServer, error) { return testsvc.StartEjabberd(ctx, opts(kind, false)) })
	}
	testsvc.RequireXMPP(b, err)
	return srv
}

// BenchmarkOrderedLoop measures messages per second through the receive
// loop (decode and in-order dispatch), fed by a fake server over a pipe.
func BenchmarkOrderedLoop(b *testing.B) {
	var msg strings.Builder
	for i := range 100 {
		msg.WriteString("<message from='bob@localhost/x' to='alice@localhost/fake' type='chat' id='m" + strconv.Itoa(i) +
			"'><body>hello number " + strconv.Itoa(i) + "</body></message>")
	}
	batch := msg.String() // 100 messages
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var want atomic.Int64
	s := New(Config{
		JID: "alice@localhost", Password: "fake-pw", Resource: "fake", Host: "127.0.0.1", PingInterval: -1,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, Handlers{Message: func(*stanza.Message) {
		if got.Add(1) == want.Load() {
			done <- struct{}{}
		}
	}})
	var server *fakeServer
	s.cfg.tls.RootCAs = fakeCert(b).pool
	s.dial = pipeDial(b, func(string) *fakeServer {
		server = &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw"}
		return server
	}, make(chan error, 1))
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	b.ResetTimer()
	t0 := time.Now()
	rounds := (b.N + 99) / 100
	want.Store(int64(rounds * 100))
	for range rounds {
		server.send(batch)
	}
	<-done
	b.ReportMetric(float64(rounds*100)/time.Since(t0).Seconds(), "msg/s")
}
