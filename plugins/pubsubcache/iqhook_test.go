package pubsubcache

import (
	"context"
	"sync/atomic"

	"gosrc.io/xmpp/stanza"

	"example.org/backend/core"
)

// iqSessions are the sessions the plugins see (fixtureOpts.sessions:
// wrap), each IQ they send passed through hook when one is set: it sends
// the request itself (x.SendIQRaw) or answers instead of the service, and
// may act around it.
type iqSessions struct {
	core.Sessions
	hook atomic.Pointer[iqHook]
}

// iqHook handles one IQ the plugins send for profile.
type iqHook func(ctx context.Context, x core.XMPP, profile, to, typ, payloadXML string) (*stanza.IQ, error)

// wrap is a fixtureOpts.sessions.
func (s *iqSessions) wrap(inner core.Sessions) core.Sessions {
	s.Sessions = inner
	return s
}

// set makes h the hook (nil: none).
func (s *iqSessions) set(h iqHook) {
	if h == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&h)
}

func (s *iqSessions) Session(profile string) (core.XMPP, error) {
	x, err := s.Sessions.Session(profile)
	if err != nil {
		return x, err
	}
	return hookedXMPP{x, s, profile}, nil
}

type hookedXMPP struct {
	core.XMPP
	s       *iqSessions
	profile string
}

func (x hookedXMPP) SendIQRaw(ctx context.Context, to, typ, payloadXML string) (*stanza.IQ, error) {
	if h := x.s.hook.Load(); h != nil {
		return (*h)(ctx, x.XMPP, x.profile, to, typ, payloadXML)
	}
	return x.XMPP.SendIQRaw(ctx, to, typ, payloadXML)
}
