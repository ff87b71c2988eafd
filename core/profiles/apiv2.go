package profiles

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core"
	"example.org/backend/core/params"
	"example.org/backend/core/session"
	"example.org/backend/triggers"
)

// NewHandlerV2 returns the path and handler of the API's ProfileService (backend.v2),
// for core.APIRegistry.Register.
func NewHandlerV2(s *Service, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv2connect.NewProfileServiceHandler(&apiServiceV2{s: s}, opts...)
}

// apiServiceV2 implements backendv2connect.ProfileServiceHandler.
type apiServiceV2 struct {
	s *Service
}

var _ backendv2connect.ProfileServiceHandler = (*apiServiceV2)(nil)

func profileMessageV2(p Profile) *backendv2.ProfileInfo {
	return &backendv2.ProfileInfo{Name: p.Name, Jid: p.JID, State: p.State, Autoconnect: p.Autoconnect}
}

// ParamMessageV2 converts a resolved parameter for the API.
func ParamMessageV2(r params.Resolved) *backendv2.ProfileParam {
	d := r.Decl
	return &backendv2.ProfileParam{
		Key: d.Key(), Type: string(d.Type), Value: r.Value, DefaultValue: d.Default, Source: string(r.Source),
		Bounds: d.Bounds(), Help: d.Help, Secret: d.Secret(), NeedsReconnect: d.NeedsReconnect, Owner: d.Owner,
	}
}

func paramMessagesV2(rs []params.Resolved) []*backendv2.ProfileParam {
	out := make([]*backendv2.ProfileParam, 0, len(rs))
	for _, r := range rs {
		out = append(out, ParamMessageV2(r))
	}
	return out
}

func (a *apiServiceV2) Create(ctx context.Context, req *connect.Request[backendv2.CreateProfileRequest]) (*connect.Response[backendv2.CreateProfileResponse], error) {
	m := req.Msg
	p, err := a.s.Create(ctx, CreateRequest{Name: m.GetName(), JID: m.GetJid(), Password: m.GetPassword(), Params: m.GetParams()})
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	return connect.NewResponse(&backendv2.CreateProfileResponse{Profile: profileMessageV2(p)}), nil
}

func (a *apiServiceV2) List(ctx context.Context, _ *connect.Request[backendv2.ListProfilesRequest]) (*connect.Response[backendv2.ListProfilesResponse], error) {
	ps, err := a.s.List(ctx)
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	res := &backendv2.ListProfilesResponse{Profiles: make([]*backendv2.ProfileInfo, 0, len(ps))}
	for _, p := range ps {
		res.Profiles = append(res.Profiles, profileMessageV2(p))
	}
	return connect.NewResponse(res), nil
}

func (a *apiServiceV2) Show(ctx context.Context, req *connect.Request[backendv2.ShowProfileRequest]) (*connect.Response[backendv2.ShowProfileResponse], error) {
	p, err := a.s.Profile(ctx, req.Msg.GetName())
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	rs, err := a.s.Params(ctx, req.Msg.GetName())
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	res := &backendv2.ShowProfileResponse{Profile: profileMessageV2(p), Params: paramMessagesV2(rs)}
	if info, ok := a.s.ConnInfo(req.Msg.GetName()); ok {
		res.Session = SessionMessageV2(info)
	}
	return connect.NewResponse(res), nil
}

// SessionMessageV2 converts what a live stream negotiated for the API.
func SessionMessageV2(info session.ConnInfo) *backendv2.SessionInfo {
	m := &backendv2.SessionInfo{
		Jid: info.JID, Endpoint: info.Endpoint.Addr(), EndpointOrigin: info.Endpoint.Origin, DirectTls: info.Endpoint.DirectTLS,
		Address: info.Address, TlsVersion: info.TLSVersion, TlsCipherSuite: info.CipherSuite,
		SaslMechanism: info.Mechanism, ChannelBinding: info.ChannelBinding, ConnectedAt: timestamppb.New(info.Since),
	}
	for _, a := range info.Failed {
		m.FailedEndpoints = append(m.FailedEndpoints, a.Endpoint.String()+": "+a.Err.Error())
	}
	return m
}

func (a *apiServiceV2) Delete(ctx context.Context, req *connect.Request[backendv2.DeleteProfileRequest]) (*connect.Response[backendv2.DeleteProfileResponse], error) {
	if err := a.s.Delete(ctx, req.Msg.GetName()); err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	return connect.NewResponse(&backendv2.DeleteProfileResponse{}), nil
}

func (a *apiServiceV2) Params(ctx context.Context, req *connect.Request[backendv2.ProfileParamsRequest]) (*connect.Response[backendv2.ProfileParamsResponse], error) {
	rs, err := a.s.Params(ctx, req.Msg.GetName())
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	return connect.NewResponse(&backendv2.ProfileParamsResponse{Params: paramMessagesV2(rs)}), nil
}

func (a *apiServiceV2) Get(ctx context.Context, req *connect.Request[backendv2.GetParamRequest]) (*connect.Response[backendv2.GetParamResponse], error) {
	r, err := a.s.Param(ctx, req.Msg.GetName(), req.Msg.GetKey())
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	return connect.NewResponse(&backendv2.GetParamResponse{Param: ParamMessageV2(r)}), nil
}

func (a *apiServiceV2) Set(ctx context.Context, req *connect.Request[backendv2.SetParamRequest]) (*connect.Response[backendv2.SetParamResponse], error) {
	r, err := a.s.Set(ctx, req.Msg.GetName(), req.Msg.GetKey(), req.Msg.GetValue())
	if err != nil {
		return nil, (&apiService{s: a.s}).apiError(err)
	}
	return connect.NewResponse(&backendv2.SetParamResponse{Param: ParamMessageV2(r)}), nil
}

// EventBindings bridge the service's events (created, deleted, parameter
// changed) to the API's event stream (see core.Bridge); the daemon
// attaches them.
func EventBindings(events *core.Events) []triggers.Binding {
	return []triggers.Binding{
		core.Bridge(events, Created, func(p Profile) []*backendv2.Event {
			return []*backendv2.Event{{Profile: p.Name, Event: &backendv2.Event_ProfileCreated{
				ProfileCreated: &backendv2.ProfileCreatedEvent{Jid: p.JID, Autoconnect: p.Autoconnect}}}}
		}),
		core.Bridge(events, Deleted, func(name string) []*backendv2.Event {
			return []*backendv2.Event{{Profile: name, Event: &backendv2.Event_ProfileDeleted{ProfileDeleted: &backendv2.ProfileDeletedEvent{}}}}
		}),
		core.Bridge(events, ParamChanged, func(c ParamChange) []*backendv2.Event {
			m := &backendv2.ParamChangedEvent{Key: c.Key, Value: valueOf(TypedValue(c.Type, c.Value)), Source: string(c.Source), NeedsReconnect: c.NeedsReconnect}
			return []*backendv2.Event{{Profile: c.Profile, Event: &backendv2.Event_ParamChanged{ParamChanged: m}}}
		}),
	}
}

// valueOf converts a TypedValue (nil, bool, int64, string, []string).
func valueOf(v any) *structpb.Value {
	switch v := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case bool:
		return structpb.NewBoolValue(v)
	case int64:
		return structpb.NewNumberValue(float64(v))
	case []string:
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, len(v))}
		for _, s := range v {
			l.Values = append(l.Values, structpb.NewStringValue(s))
		}
		return structpb.NewListValue(l)
	case string:
		return structpb.NewStringValue(v)
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}
