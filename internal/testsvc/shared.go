package testsvc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// SharedXMPP starts each kind of XMPP server at most once per test binary,
// on first use, with the same accounts; StopAll (from TestMain) stops them.
// Kinds: KindProsody, KindEjabberd, and "prosody-scram" (PLAIN disabled).
type SharedXMPP struct {
	Accounts map[string]string
	// DirectTLS gives every server a direct TLS listener too.
	DirectTLS bool
	mu        sync.Mutex
	servers   map[string]*sharedServer
}

type sharedServer struct {
	once sync.Once
	srv  *XMPPServer
	err  error
}

// Use returns the server of kind, started on first use, records that the
// test uses it (see Uses), and fails or skips the test when it cannot start
// (see RequireXMPP).
func (s *SharedXMPP) Use(t testing.TB, kind string) *XMPPServer {
	t.Helper()
	s.mu.Lock()
	if s.servers == nil {
		s.servers = map[string]*sharedServer{}
	}
	e := s.servers[kind]
	if e == nil {
		e = &sharedServer{}
		s.servers[kind] = e
	}
	s.mu.Unlock()
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		opts := XMPPOptions{Accounts: s.Accounts, DirectTLS: s.DirectTLS}
		switch kind {
		case KindProsody:
			e.srv, e.err = StartProsody(ctx, opts)
		case KindEjabberd:
			e.srv, e.err = StartEjabberd(ctx, opts)
		case "prosody-scram":
			opts.ScramOnly = true
			e.srv, e.err = StartProsody(ctx, opts)
		default:
			e.err = fmt.Errorf("unknown server kind %q", kind)
		}
	})
	RequireXMPP(t, e.err)
	name := kind
	if kind == "prosody-scram" {
		name = KindProsody
	}
	Uses(t, name)
	return e.srv
}

// StopAll stops every server started by Use.
func (s *SharedXMPP) StopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.servers {
		if e.srv != nil {
			e.srv.Stop()
		}
	}
}
