package connections

import (
	"context"
	"net/http"

	"connectrpc.com/connect"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core"
	"example.org/backend/triggers"
)

// NewHandlerV2 returns the SessionService (backend.v2)'s Connect path and handler.
func NewHandlerV2(m *Manager, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv2connect.NewSessionServiceHandler(&apiV2{m: m}, opts...)
}

type apiV2 struct{ m *Manager }

func (a *apiV2) Connect(ctx context.Context, req *connect.Request[backendv2.ConnectRequest]) (*connect.Response[backendv2.ConnectResponse], error) {
	name := req.Msg.GetProfile()
	if err := a.m.Connect(ctx, name); err != nil {
		return nil, apiError(err)
	}
	res := &backendv2.ConnectResponse{State: a.m.State(name)}
	if s, err := a.m.Session(name); err == nil {
		res.Jid = s.JID()
	}
	return connect.NewResponse(res), nil
}

func (a *apiV2) Disconnect(ctx context.Context, req *connect.Request[backendv2.DisconnectRequest]) (*connect.Response[backendv2.DisconnectResponse], error) {
	name := req.Msg.GetProfile()
	if _, err := a.m.profiles.Profile(ctx, name); err != nil {
		return nil, apiError(err)
	}
	if err := a.m.Disconnect(ctx, name); err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&backendv2.DisconnectResponse{State: a.m.State(name)}), nil
}

// EventBindings bridge StateChanged to the API's event stream (see
// core.Bridge); the daemon attaches them.
func EventBindings(events *core.Events) []triggers.Binding {
	return []triggers.Binding{
		core.Bridge(events, StateChanged, func(c StateChange) []*backendv2.Event {
			m := &backendv2.SessionStateEvent{State: c.State}
			if c.Err != nil {
				e := c.Err.Error()
				m.Error = &e
			}
			if c.JID != "" {
				j := c.JID
				m.Jid = &j
			}
			return []*backendv2.Event{{Profile: c.Profile, Event: &backendv2.Event_SessionState{SessionState: m}}}
		}),
	}
}
