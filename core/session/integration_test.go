package session

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
	"gosrc.io/xmpp/stanza"
)

const pingPayload = "<ping xmlns='urn:xmpp:ping'/>"

func TestLogin(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			var rec stateRecorder
			connected := make(chan string, 1)
			s, logs := startSession(t, testConfig(srv, "alice", "login"), Handlers{
				StateChanged: rec.record,
				Connected:    func(_ context.Context, j string) { connected <- j },
			})
			if s.State() != StateConnected {
				t.Fatalf("state = %s, want connected", s.State())
			}
			if want := "alice@localhost/login"; s.JID() != want {
				t.Errorf("JID() = %q, want %q", s.JID(), want)
			}
			select {
			case j := <-connected:
				if j != s.JID() {
					t.Errorf("Connected got %q, want %q", j, s.JID())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Connected was not called")
			}
			if got := rec.states[:2]; !slices.Equal(got, []State{StateConnecting, StateConnected}) {
				t.Errorf("states = %v", got)
			}
			// The server answers a ping.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := s.SendIQRaw(ctx, srv.Domain, "get", pingPayload); err != nil {
				t.Fatalf("ping the server: %v", err)
			}
			if s.IQsSent() != 1 {
				t.Errorf("IQsSent = %d, want 1", s.IQsSent())
			}
			// The shared Prosody offers SCRAM-SHA-1, the shared ejabberd
			// SCRAM-SHA-512 (see opts); TLS 1.3: no channel binding.
			want := map[string]string{testsvc.KindProsody: "SCRAM-SHA-1", testsvc.KindEjabberd: "SCRAM-SHA-512"}[kind]
			if info, ok := s.ConnInfo(); !ok || info.Mechanism != want || !strings.Contains(logs.String(), "mechanism="+want) {
				t.Errorf("mechanism %q, want %s: %s", info.Mechanism, want, logs.String())
			}
		})
	}
}

// TestSCRAMOnly proves SCRAM against a Prosody that refuses PLAIN.
func TestSCRAMOnly(t *testing.T) {
	srv := useServer(t, "prosody-scram")
	s, logs := startSession(t, testConfig(srv, "alice", "scram"), Handlers{})
	if s.State() != StateConnected {
		t.Fatalf("state = %s", s.State())
	}
	if !strings.Contains(logs.String(), "mechanism=SCRAM-") {
		t.Errorf("no SCRAM mechanism in the logs: %s", logs.String())
	}
	// The same account with a wrong password fails with not-authorized.
	cfg := testConfig(srv, "alice", "scram-bad")
	cfg.Password = "wrong-password"
	err := New(cfg, Handlers{}).Start(context.Background())
	var auth *AuthError
	if !errors.As(err, &auth) || auth.Condition != "not-authorized" || !strings.HasPrefix(auth.Mechanism, "SCRAM-") {
		t.Fatalf("wrong password over SCRAM: %v, want a SCRAM not-authorized AuthError", err)
	}
}

func TestWrongPassword(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			cfg := testConfig(srv, "bob", "wrong")
			cfg.Password = "definitely-not-the-password"
			var attempts, disconnects atomic.Int32
			var rec stateRecorder
			s := New(cfg, Handlers{
				Connecting:   func(context.Context) error { attempts.Add(1); return nil },
				Disconnected: func(error) { disconnects.Add(1) },
				StateChanged: rec.record,
			})
			err := s.Start(context.Background())
			var auth *AuthError
			if !errors.As(err, &auth) {
				t.Fatalf("Start error = %v, want *AuthError", err)
			}
			if auth.Condition != "not-authorized" {
				t.Errorf("condition = %q, want not-authorized", auth.Condition)
			}
			if !IsPermanent(err) {
				t.Error("an auth error is not permanent")
			}
			if s.State() != StateFailed {
				t.Errorf("state = %s, want failed", s.State())
			}
			if strings.Contains(err.Error(), cfg.Password) {
				t.Error("the error quotes the password")
			}
			if attempts.Load() != 1 || disconnects.Load() != 0 {
				t.Errorf("attempts = %d, disconnects = %d; want 1 and 0", attempts.Load(), disconnects.Load())
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Errorf("Stop after a failed Start: %v", err)
			}
		})
	}
}

// TestPasswordChangedWhileConnected: the supervisor meets not-authorized
// on reconnection and stops (failed) instead of retrying.
func TestPasswordChangedWhileConnected(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	var attempts atomic.Int32
	var rec stateRecorder
	s, _ := startSession(t, testConfig(srv, "grace", "pwchange"), Handlers{
		Connecting:   func(context.Context) error { attempts.Add(1); return nil },
		StateChanged: rec.record,
	})
	ctx := context.Background()
	if err := srv.Register(ctx, "grace", "a-new-password"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Register(ctx, "grace", testAccounts["grace"]); err != nil {
			t.Error(err)
		}
	}()
	// Prosody closes the account's streams itself when the password
	// changes; close it here otherwise.
	if err := srv.CloseStream(ctx, s.JID()); err != nil && !strings.Contains(err.Error(), "no session") {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "state failed", func() bool { return s.State() == StateFailed })
	time.Sleep(300 * time.Millisecond) // several backoff periods (50 ms)
	if n := attempts.Load(); n != 2 {
		t.Errorf("connection attempts = %d, want 2 (start, one reconnection)", n)
	}
	rec.mu.Lock()
	last := rec.errs[len(rec.errs)-1]
	rec.mu.Unlock()
	var auth *AuthError
	if !errors.As(last, &auth) || auth.Condition != "not-authorized" {
		t.Errorf("failed state error = %v", last)
	}
}

func TestMessagesInOrder(t *testing.T) {
	const n = 500
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			var mu sync.Mutex
			var got []int
			all := make(chan struct{})
			recv, _ := startSession(t, testConfig(srv, "alice", "order"), Handlers{
				Message: func(m *stanza.Message) {
					if !strings.HasPrefix(m.Id, "order-") {
						return
					}
					i, err := strconv.Atoi(m.Body)
					if err != nil {
						return
					}
					mu.Lock()
					got = append(got, i)
					if len(got) == n {
						close(all)
					}
					mu.Unlock()
				},
			})
			send, _ := startSession(t, testConfig(srv, "bob", "order"), Handlers{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			t0 := time.Now()
			for i := range n {
				m := stanza.NewMessage(stanza.Attrs{To: recv.JID(), Type: stanza.MessageTypeChat, Id: "order-" + strconv.Itoa(i)})
				m.Body = strconv.Itoa(i)
				if err := send.Send(ctx, m); err != nil {
					t.Fatalf("send message %d: %v", i, err)
				}
			}
			select {
			case <-all:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("received %d of %d messages", len(got), n)
			}
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			inversions := 0
			for i := 1; i < len(got); i++ {
				if got[i] < got[i-1] {
					inversions++
				}
			}
			if inversions != 0 || got[0] != 0 || got[n-1] != n-1 {
				t.Errorf("%d inversions in %d messages", inversions, n)
			}
			t.Logf("%s: %d messages in order through the server in %s (%.0f msg/s end to end)", kind, n, took.Round(time.Millisecond), n/took.Seconds())
		})
	}
}

func TestConcurrentPings(t *testing.T) {
	const total, workers = 2000, 32
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			s, _ := startSession(t, testConfig(srv, "carol", "pings"), Handlers{})
			var next, lost atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			t0 := time.Now()
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= total {
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						_, err := s.SendIQRaw(ctx, srv.Domain, "get", pingPayload)
						cancel()
						if err != nil {
							lost.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(t0)
			if lost.Load() != 0 {
				t.Errorf("%d of %d pings failed, first: %v", lost.Load(), total, firstErr.Load())
			}
			if s.IQsSent() != total {
				t.Errorf("IQsSent = %d, want %d", s.IQsSent(), total)
			}
			t.Logf("%s: %d pings from %d goroutines in %s (%.0f IQ/s)", kind, total, workers, took.Round(time.Millisecond), total/took.Seconds())
		})
	}
}

// TestIQDeadline: an IQ to an entity that never answers ends with ctx.
func TestIQDeadline(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	release := make(chan struct{})
	silent, _ := startSession(t, testConfig(srv, "dave", "silent"), Handlers{
		IQ: func(ctx context.Context, _ *stanza.IQ) (*stanza.IQ, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, ErrUnhandled
		},
	})
	defer close(release)
	s, _ := startSession(t, testConfig(srv, "alice", "deadline"), Handlers{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := s.SendIQRaw(ctx, silent.JID(), "get", "<query xmlns='urn:example:never'/>")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	// The session is still usable.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := s.SendIQRaw(ctx2, srv.Domain, "get", pingPayload); err != nil {
		t.Fatal(err)
	}
}

// TestSpoofedAnswerDropped: alice asks bob; carol, who learnt the id,
// answers first; the server stamps carol's JID as 'from', so alice drops
// that answer and waits for bob's.
func TestSpoofedAnswerDropped(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			spoofed := make(chan struct{})
			bob, _ := startSession(t, testConfig(srv, "bob", "spoof-target"), Handlers{
				IQ: func(ctx context.Context, iq *stanza.IQ) (*stanza.IQ, error) {
					select { // answer only after carol's forged answer
					case <-spoofed:
					case <-ctx.Done():
					}
					return &stanza.IQ{Attrs: stanza.Attrs{Type: stanza.IQTypeResult}}, nil
				},
			})
			carol, _ := startSession(t, testConfig(srv, "carol", "spoofer"), Handlers{})
			alice, logs := startSession(t, testConfig(srv, "alice", "spoof-asker"), Handlers{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const id = "spoof-test-1"
			type answer struct {
				iq  *stanza.IQ
				err error
			}
			got := make(chan answer, 1)
			go func() {
				iq, _ := stanza.NewIQ(stanza.Attrs{Type: stanza.IQTypeGet, To: bob.JID(), Id: id})
				iq.Any = &stanza.Node{XMLName: xml.Name{Space: "urn:example:spoof", Local: "query"}}
				res, err := alice.SendIQ(ctx, iq)
				got <- answer{res, err}
			}()
			eventually(t, 5*time.Second, "the request to be pending", func() bool {
				alice.tracker.mu.Lock()
				defer alice.tracker.mu.Unlock()
				return alice.tracker.pending[id] != nil
			})
			// Servers stamp (or reject) 'from': the forged answer reaches
			// alice from carol's JID.
			forged := fmt.Sprintf("<iq type='result' id='%s' to='%s'><forged xmlns='urn:example:spoof'/></iq>", id, alice.JID())
			if err := carol.SendRaw(ctx, forged); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the forged answer to be dropped", func() bool {
				return strings.Contains(logs.String(), "dropped an iq answer matching no request")
			})
			close(spoofed)
			a := <-got
			if a.err != nil {
				t.Fatalf("SendIQ: %v", a.err)
			}
			if normalizeJID(a.iq.From) != normalizeJID(bob.JID()) {
				t.Errorf("answer from %q, want bob %q", a.iq.From, bob.JID())
			}
			if a.iq.Any != nil && a.iq.Any.XMLName.Local == "forged" {
				t.Error("got the forged answer")
			}
		})
	}
}

// TestDiscoResponder: another session queries our disco#info and gets the
// identity and features; the caps node#ver form answers the same, and the
// advertised ver is the hash of the answer.
func TestDiscoResponder(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := useServer(t, kind)
			alice, _ := startSession(t, testConfig(srv, "alice", "disco"), Handlers{})
			bob, _ := startSession(t, testConfig(srv, "bob", "disco"), Handlers{})
			alice.SetFeatures(Identity{Category: "client", Type: "bot", Name: "test backend"},
				[]string{"urn:xmpp:microblog:0+notify", "urn:xmpp:microblog:0"})
			node, ver := alice.Caps()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, n := range []string{"", node + "#" + ver} {
				iq, _ := stanza.NewIQ(stanza.Attrs{Type: stanza.IQTypeGet, To: alice.JID()})
				iq.DiscoInfo().SetNode(n)
				res, err := bob.SendIQ(ctx, iq)
				if err != nil {
					t.Fatalf("disco#info node %q: %v", n, err)
				}
				info, ok := res.Payload.(*stanza.DiscoInfo)
				if !ok {
					t.Fatalf("answer payload %T", res.Payload)
				}
				var ids []Identity
				for _, id := range info.Identity {
					ids = append(ids, Identity{Category: id.Category, Type: id.Type, Name: id.Name})
				}
				var features []string
				for _, f := range info.Features {
					features = append(features, f.Var)
				}
				for _, want := range []string{"urn:xmpp:microblog:0+notify", NSDiscoInfo, NSPing, NSCaps} {
					if !slices.Contains(features, want) {
						t.Errorf("node %q: features %v lack %s", n, features, want)
					}
				}
				if got := CapsVer(ids, features); got != ver {
					t.Errorf("node %q: hash of the answer %s, advertised %s", n, got, ver)
				}
				if info.Node != n {
					t.Errorf("answer node %q, want %q", info.Node, n)
				}
			}
			// An unknown node is item-not-found.
			iq, _ := stanza.NewIQ(stanza.Attrs{Type: stanza.IQTypeGet, To: alice.JID()})
			iq.DiscoInfo().SetNode("urn:example:unknown")
			_, err := bob.SendIQ(ctx, iq)
			var iqErr *IQError
			if !errors.As(err, &iqErr) || iqErr.Condition != "item-not-found" {
				t.Errorf("unknown node: %v, want item-not-found", err)
			}
			// A request alice has no handler for: feature-not-implemented.
			_, err = bob.SendIQRaw(ctx, alice.JID(), "get", "<query xmlns='urn:example:nothing'/>")
			if !errors.As(err, &iqErr) || iqErr.Condition != "feature-not-implemented" {
				t.Errorf("unhandled request: %v, want feature-not-implemented", err)
			}
			// Ping between clients.
			if _, err := bob.SendIQRaw(ctx, alice.JID(), "get", pingPayload); err != nil {
				t.Errorf("ping alice: %v", err)
			}
		})
	}
}

// TestIQHandler: answers, nil answers and errors of Handlers.IQ.
func TestIQHandler(t *testing.T) {
	srv := useServer(t, testsvc.KindProsody)
	alice, _ := startSession(t, testConfig(srv, "alice", "handler"), Handlers{
		IQ: func(_ context.Context, iq *stanza.IQ) (*stanza.IQ, error) {
			switch iq.Any.XMLName.Space {
			case "urn:example:answer":
				return &stanza.IQ{Any: &stanza.Node{XMLName: xml.Name{Space: "urn:example:answer", Local: "done"}}}, nil
			case "urn:example:nil":
				return nil, nil
			case "urn:example:forbidden":
				return nil, &IQError{Condition: "forbidden", Type: "auth"}
			case "urn:example:broken":
				return nil, errors.New("some internal failure")
			}
			return nil, ErrUnhandled
		},
	})
	bob, _ := startSession(t, testConfig(srv, "bob", "handler"), Handlers{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct{ ns, wantCond string }{
		{"urn:example:answer", ""},
		{"urn:example:nil", "service-unavailable"},
		{"urn:example:forbidden", "forbidden"},
		{"urn:example:broken", "internal-server-error"},
		{"urn:example:other", "feature-not-implemented"},
	}
	for _, tt := range tests {
		res, err := bob.SendIQRaw(ctx, alice.JID(), "set", "<q xmlns='"+tt.ns+"'/>")
		var iqErr *IQError
		switch {
		case tt.wantCond == "" && err != nil:
			t.Errorf("%s: %v", tt.ns, err)
		case tt.wantCond == "" && (res.Any == nil || res.Any.XMLName.Local != "done"):
			t.Errorf("%s: answer %+v", tt.ns, res)
		case tt.wantCond != "" && (!errors.As(err, &iqErr) || iqErr.Condition != tt.wantCond):
			t.Errorf("%s: err %v, want %s", tt.ns, err, tt.wantCond)
		}
	}
}
