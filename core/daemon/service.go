package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv1 "example.org/backend/api/backendv1"
	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/core/eventjson"
)

// daemonServiceV2 implements backend.v2.DaemonService.
type daemonServiceV2 struct {
	d *Daemon
}

func (s *daemonServiceV2) Status(ctx context.Context, _ *connect.Request[backendv2.StatusRequest]) (*connect.Response[backendv2.StatusResponse], error) {
	h := s.d.Host
	res := &backendv2.StatusResponse{
		Version:  h.Version,
		UptimeS:  int64(time.Since(h.Started).Seconds()),
		Counters: h.Counters.Snapshot(),
		Profiles: []*backendv2.ProfileState{},
		Build: &backendv2.BuildInfo{Version: h.Build.Version, Revision: h.Build.Revision, VcsTime: h.Build.Time,
			Dirty: h.Build.Dirty, GoVersion: h.Build.GoVersion, Platform: h.Build.Platform},
	}
	if s.d.cfg.APITCPAddress != "" {
		addr := s.d.cfg.APITCPAddress
		if s.d.API != nil && s.d.API.TCPAddr() != nil {
			addr = s.d.API.TCPAddr().String()
		}
		res.TcpAddress = &addr
	}
	if s.d.TLSFingerprint != "" {
		fp := s.d.TLSFingerprint
		res.TlsFingerprint = &fp
	}
	if s.d.Profiles != nil {
		ps, err := s.d.Profiles.List(ctx)
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("list profiles: %w", err))
		}
		iqs := s.d.Sessions.IQsSent()
		for _, p := range ps {
			res.Profiles = append(res.Profiles, &backendv2.ProfileState{Name: p.Name, Jid: p.JID, State: p.State, IqsSent: iqs[p.Name]})
		}
	}
	for _, p := range s.d.Plugins.Started() {
		in := p.Info()
		res.Plugins = append(res.Plugins, &backendv2.PluginState{
			Name: in.ImportName, Version: in.Version, State: "running", Kind: "builtin",
		})
	}
	if s.d.external != nil {
		for _, p := range s.d.external.status() {
			res.Plugins = append(res.Plugins, &backendv2.PluginState{
				Name: p.Name, Version: p.Version, State: p.State, Pid: p.Pid, Kind: "external",
			})
		}
	}
	return connect.NewResponse(res), nil
}

func (s *daemonServiceV2) ListTriggers(ctx context.Context, _ *connect.Request[backendv2.ListTriggersRequest]) (*connect.Response[backendv2.ListTriggersResponse], error) {
	res := &backendv2.ListTriggersResponse{}
	for _, c := range s.d.Host.Bus.Chains() {
		p := &backendv2.TriggerPoint{Id: c.Point, Kind: c.Kind, Doc: c.Doc}
		for _, h := range c.Handlers {
			p.Handlers = append(p.Handlers, &backendv2.TriggerHandler{Owner: h.Owner, Priority: int64(h.Priority), Seq: h.Seq})
		}
		res.Points = append(res.Points, p)
	}
	return connect.NewResponse(res), nil
}

func (s *daemonServiceV2) Events(ctx context.Context, req *connect.Request[backendv2.EventsRequest], stream *connect.ServerStream[backendv2.Event]) error {
	return s.d.streamEvents(ctx, req.Msg.GetProfile(), stream.Send)
}

// streamEvents sends the typed events of profile (all when "") until ctx
// ends: first `started`, once subscribed, so that the client can rely on
// receiving every event published from then on.
func (d *Daemon) streamEvents(ctx context.Context, profile string, send func(*backendv2.Event) error) error {
	sub := d.Host.Events.Subscribe(profile)
	defer sub.Close()
	started := &backendv2.Event{Time: timestamppb.Now(), Event: &backendv2.Event_Started{Started: &backendv2.StreamStarted{}}}
	if err := send(started); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if sub.Lagged() {
					return connect.NewError(connect.CodeResourceExhausted, errors.New("event stream fell behind by more than its buffer; reconnect"))
				}
				return nil
			}
			if err := send(ev); err != nil {
				return err
			}
		}
	}
}

// daemonService implements the deprecated backend.v1.DaemonService over
// v2: its messages have the same fields (the same wire form), and its
// events are the typed ones in their JSON shape (data_json).
type daemonService struct {
	v2 *daemonServiceV2
}

// sameWire converts between a v1 and a v2 message whose fields are the
// same (numbers and types), through the wire form.
func sameWire[T proto.Message](dst T, src proto.Message) (T, error) {
	b, err := proto.Marshal(src)
	if err == nil {
		err = proto.Unmarshal(b, dst)
	}
	return dst, err
}

func (s *daemonService) Status(ctx context.Context, _ *connect.Request[backendv1.StatusRequest]) (*connect.Response[backendv1.StatusResponse], error) {
	res, err := s.v2.Status(ctx, connect.NewRequest(&backendv2.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	m, err := sameWire(&backendv1.StatusResponse{}, res.Msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(m), nil
}

func (s *daemonService) ListTriggers(ctx context.Context, _ *connect.Request[backendv1.ListTriggersRequest]) (*connect.Response[backendv1.ListTriggersResponse], error) {
	res, err := s.v2.ListTriggers(ctx, connect.NewRequest(&backendv2.ListTriggersRequest{}))
	if err != nil {
		return nil, err
	}
	m, err := sameWire(&backendv1.ListTriggersResponse{}, res.Msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(m), nil
}

func (s *daemonService) Events(ctx context.Context, req *connect.Request[backendv1.EventsRequest], stream *connect.ServerStream[backendv1.Event]) error {
	return s.v2.d.streamEvents(ctx, req.Msg.GetProfile(), func(ev *backendv2.Event) error {
		m, ok := eventV1(ev)
		if !ok {
			return nil
		}
		return stream.Send(m)
	})
}

// eventV1 is ev as the v1 stream sends it: its type and its fields as JSON.
func eventV1(ev *backendv2.Event) (*backendv1.Event, bool) {
	typ, fields, ok := eventjson.Fields(ev)
	if !ok {
		return nil, false
	}
	data, err := json.Marshal(fields)
	if err != nil {
		data = []byte("{}")
	}
	return &backendv1.Event{Type: typ, Profile: ev.GetProfile(), Time: ev.GetTime(), DataJson: data}, true
}
