package connections

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/profiles"
	"example.org/backend/core/session"
)

// NewHandler returns the SessionService's Connect path and handler.
func NewHandler(m *Manager, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv1connect.NewSessionServiceHandler(&api{m: m}, opts...)
}

type api struct{ m *Manager }

func (a *api) Connect(ctx context.Context, req *connect.Request[backendv1.ConnectRequest]) (*connect.Response[backendv1.ConnectResponse], error) {
	name := req.Msg.GetProfile()
	if err := a.m.Connect(ctx, name); err != nil {
		return nil, apiError(err)
	}
	res := &backendv1.ConnectResponse{State: a.m.State(name)}
	if s, err := a.m.Session(name); err == nil {
		res.Jid = s.JID()
	}
	return connect.NewResponse(res), nil
}

func (a *api) Disconnect(ctx context.Context, req *connect.Request[backendv1.DisconnectRequest]) (*connect.Response[backendv1.DisconnectResponse], error) {
	name := req.Msg.GetProfile()
	if _, err := a.m.profiles.Profile(ctx, name); err != nil {
		return nil, apiError(err)
	}
	if err := a.m.Disconnect(ctx, name); err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&backendv1.DisconnectResponse{State: a.m.State(name)}), nil
}

// apiError maps session and profile errors to API codes.
func apiError(err error) error {
	var auth *session.AuthError
	switch {
	case errors.Is(err, profiles.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, profiles.ErrSecretUnavailable):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.As(err, &auth):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	default:
		return connect.NewError(connect.CodeUnavailable, err)
	}
}
