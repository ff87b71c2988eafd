package profiles

import (
	"context"
	"errors"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/jid"
	"example.org/backend/core/params"
	"example.org/backend/core/session"
)

// NewHandler returns the path and handler of the API's ProfileService,
// for core.APIRegistry.Register.
func NewHandler(s *Service, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv1connect.NewProfileServiceHandler(&apiService{s: s}, opts...)
}

// apiService implements backendv1connect.ProfileServiceHandler.
type apiService struct {
	s *Service
}

var _ backendv1connect.ProfileServiceHandler = (*apiService)(nil)

// apiError maps the service's errors to Connect codes. Messages never hold
// secret values (the service does not put them in errors).
func (a *apiService) apiError(err error) error {
	code := connect.CodeInternal
	switch {
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, ErrExists):
		code = connect.CodeAlreadyExists
	case errors.Is(err, ErrInvalidName), errors.Is(err, params.ErrUnknownKey),
		errors.Is(err, params.ErrInvalidValue), errors.Is(err, jid.ErrInvalid):
		code = connect.CodeInvalidArgument
	case errors.Is(err, ErrSecretUnavailable):
		code = connect.CodeFailedPrecondition
	default:
		a.s.log.Error("profile request failed", "err", err)
	}
	return connect.NewError(code, err)
}

func profileMessage(p Profile) *backendv1.ProfileInfo {
	return &backendv1.ProfileInfo{Name: p.Name, Jid: p.JID, State: p.State, Autoconnect: p.Autoconnect}
}

// ParamMessage converts a resolved parameter for the API.
func ParamMessage(r params.Resolved) *backendv1.ProfileParam {
	d := r.Decl
	return &backendv1.ProfileParam{
		Key: d.Key(), Type: string(d.Type), Value: r.Value, DefaultValue: d.Default, Source: string(r.Source),
		Bounds: d.Bounds(), Help: d.Help, Secret: d.Secret(), NeedsReconnect: d.NeedsReconnect, Owner: d.Owner,
	}
}

func paramMessages(rs []params.Resolved) []*backendv1.ProfileParam {
	out := make([]*backendv1.ProfileParam, 0, len(rs))
	for _, r := range rs {
		out = append(out, ParamMessage(r))
	}
	return out
}

func (a *apiService) Create(ctx context.Context, req *connect.Request[backendv1.CreateProfileRequest]) (*connect.Response[backendv1.CreateProfileResponse], error) {
	m := req.Msg
	p, err := a.s.Create(ctx, CreateRequest{Name: m.GetName(), JID: m.GetJid(), Password: m.GetPassword(), Params: m.GetParams()})
	if err != nil {
		return nil, a.apiError(err)
	}
	return connect.NewResponse(&backendv1.CreateProfileResponse{Profile: profileMessage(p)}), nil
}

func (a *apiService) List(ctx context.Context, _ *connect.Request[backendv1.ListProfilesRequest]) (*connect.Response[backendv1.ListProfilesResponse], error) {
	ps, err := a.s.List(ctx)
	if err != nil {
		return nil, a.apiError(err)
	}
	res := &backendv1.ListProfilesResponse{Profiles: make([]*backendv1.ProfileInfo, 0, len(ps))}
	for _, p := range ps {
		res.Profiles = append(res.Profiles, profileMessage(p))
	}
	return connect.NewResponse(res), nil
}

func (a *apiService) Show(ctx context.Context, req *connect.Request[backendv1.ShowProfileRequest]) (*connect.Response[backendv1.ShowProfileResponse], error) {
	p, err := a.s.Profile(ctx, req.Msg.GetName())
	if err != nil {
		return nil, a.apiError(err)
	}
	rs, err := a.s.Params(ctx, req.Msg.GetName())
	if err != nil {
		return nil, a.apiError(err)
	}
	res := &backendv1.ShowProfileResponse{Profile: profileMessage(p), Params: paramMessages(rs)}
	if info, ok := a.s.ConnInfo(req.Msg.GetName()); ok {
		res.Session = SessionMessage(info)
	}
	return connect.NewResponse(res), nil
}

// SessionMessage converts what a live stream negotiated for the API.
func SessionMessage(info session.ConnInfo) *backendv1.SessionInfo {
	m := &backendv1.SessionInfo{
		Jid: info.JID, Endpoint: info.Endpoint.Addr(), EndpointOrigin: info.Endpoint.Origin, DirectTls: info.Endpoint.DirectTLS,
		Address: info.Address, TlsVersion: info.TLSVersion, TlsCipherSuite: info.CipherSuite,
		SaslMechanism: info.Mechanism, ChannelBinding: info.ChannelBinding, ConnectedAt: timestamppb.New(info.Since),
	}
	for _, a := range info.Failed {
		m.FailedEndpoints = append(m.FailedEndpoints, a.Endpoint.String()+": "+a.Err.Error())
	}
	return m
}

func (a *apiService) Delete(ctx context.Context, req *connect.Request[backendv1.DeleteProfileRequest]) (*connect.Response[backendv1.DeleteProfileResponse], error) {
	if err := a.s.Delete(ctx, req.Msg.GetName()); err != nil {
		return nil, a.apiError(err)
	}
	return connect.NewResponse(&backendv1.DeleteProfileResponse{}), nil
}

func (a *apiService) Params(ctx context.Context, req *connect.Request[backendv1.ProfileParamsRequest]) (*connect.Response[backendv1.ProfileParamsResponse], error) {
	rs, err := a.s.Params(ctx, req.Msg.GetName())
	if err != nil {
		return nil, a.apiError(err)
	}
	return connect.NewResponse(&backendv1.ProfileParamsResponse{Params: paramMessages(rs)}), nil
}

func (a *apiService) Get(ctx context.Context, req *connect.Request[backendv1.GetParamRequest]) (*connect.Response[backendv1.GetParamResponse], error) {
	r, err := a.s.Param(ctx, req.Msg.GetName(), req.Msg.GetKey())
	if err != nil {
		return nil, a.apiError(err)
	}
	return connect.NewResponse(&backendv1.GetParamResponse{Param: ParamMessage(r)}), nil
}

func (a *apiService) Set(ctx context.Context, req *connect.Request[backendv1.SetParamRequest]) (*connect.Response[backendv1.SetParamResponse], error) {
	r, err := a.s.Set(ctx, req.Msg.GetName(), req.Msg.GetKey(), req.Msg.GetValue())
	if err != nil {
		return nil, a.apiError(err)
	}
	return connect.NewResponse(&backendv1.SetParamResponse{Param: ParamMessage(r)}), nil
}
