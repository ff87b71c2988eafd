package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core/session"
	"example.org/backend/internal/testsvc"
	"example.org/backend/plugins/xep0060/wire"
)

// BenchmarkItems20 compares a 20-item get on Prosody (SQL store) through the
// daemon's API (CLI-side Connect client → daemon → session → server) with
// the same request sent directly by the session layer.
//
//	go test -tags sqlite_fts5 -run '^$' -bench Items20 -benchtime 200x ./cmd/backend/
func BenchmarkItems20(b *testing.B) {
	srv := servers.Use(b, testsvc.KindProsody)
	e := pubsubEnv(b, srv)
	node := "urn:bench:items20"
	for i := range 20 {
		payload := fmt.Sprintf("<entry xmlns='http://www.w3.org/2005/Atom'><title>Post %d</title><content>%s</content></entry>", i, strings.Repeat("text ", 40))
		args := []string{"pubsub", "publish", "-p", "alice", "-n", node, "-i", fmt.Sprint("item-", i)}
		if i == 0 {
			args = append(args, "--option", "pubsub#max_items=max")
		}
		var out, errb strings.Builder
		a := newApp(strings.NewReader(payload), &out, &errb)
		a.lookup = e.lookup
		if code := a.execute(args); code != exitOK {
			b.Fatalf("publish: %s", errb.String())
		}
	}
	ctx := context.Background()

	b.Run("api", func(b *testing.B) {
		a := newApp(strings.NewReader(""), io.Discard, io.Discard)
		a.lookup = e.lookup
		c, err := a.dial()
		if err != nil {
			b.Fatal(err)
		}
		client := c.pubsub()
		req := &backendv2.PubSubItemsRequest{Profile: "alice", Node: node, MaxItems: 20, NoCache: true}
		b.ResetTimer()
		for b.Loop() {
			stream, err := client.Items(ctx, connect.NewRequest(req))
			if err != nil {
				b.Fatalf("items: %v", err)
			}
			n := 0
			for stream.Receive() {
				n += len(stream.Msg().GetItems())
			}
			stream.Close()
			if stream.Err() != nil || n != 20 {
				b.Fatalf("items: %d %v", n, stream.Err())
			}
		}
	})

	b.Run("session", func(b *testing.B) {
		s := session.New(session.Config{JID: "alice@" + srv.Domain, Password: "alice-pw", Resource: "bench",
			Host: srv.Host, Port: srv.Port, CAFile: srv.CAFile, PingInterval: -1,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, session.Handlers{})
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer s.Stop(ctx)
		wire.Register()
		payload := wire.ItemsQuery{Node: node, MaxItems: 20}.XML()
		b.ResetTimer()
		for b.Loop() {
			iq, err := s.SendIQRaw(ctx, "alice@"+srv.Domain, "get", payload)
			if err != nil {
				b.Fatal(err)
			}
			ps, ok := iq.Payload.(*wire.PubSub)
			if !ok {
				b.Fatalf("payload %T", iq.Payload)
			}
			r, err := wire.ParseItems(ps.Inner)
			if err != nil || len(r.Items) != 20 {
				b.Fatalf("parse: %v", err)
			}
		}
	})
}
