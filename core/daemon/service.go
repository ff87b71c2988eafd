package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/core"
)

// daemonService implements backend.v1.DaemonService.
type daemonService struct {
	d *Daemon
}

func (s *daemonService) Status(ctx context.Context, _ *connect.Request[backendv1.StatusRequest]) (*connect.Response[backendv1.StatusResponse], error) {
	h := s.d.Host
	res := &backendv1.StatusResponse{
		Version:  h.Version,
		UptimeS:  int64(time.Since(h.Started).Seconds()),
		Counters: h.Counters.Snapshot(),
		Profiles: []*backendv1.ProfileState{},
		Build: &backendv1.BuildInfo{Version: h.Build.Version, Revision: h.Build.Revision, VcsTime: h.Build.Time,
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
			res.Profiles = append(res.Profiles, &backendv1.ProfileState{Name: p.Name, Jid: p.JID, State: p.State, IqsSent: iqs[p.Name]})
		}
	}
	for _, p := range s.d.Plugins.Started() {
		in := p.Info()
		res.Plugins = append(res.Plugins, &backendv1.PluginState{
			Name: in.ImportName, Version: in.Version, State: "running", Kind: "builtin",
		})
	}
	if s.d.external != nil {
		for _, p := range s.d.external.status() {
			res.Plugins = append(res.Plugins, &backendv1.PluginState{
				Name: p.Name, Version: p.Version, State: p.State, Pid: p.Pid, Kind: "external",
			})
		}
	}
	return connect.NewResponse(res), nil
}

func (s *daemonService) ListTriggers(ctx context.Context, _ *connect.Request[backendv1.ListTriggersRequest]) (*connect.Response[backendv1.ListTriggersResponse], error) {
	res := &backendv1.ListTriggersResponse{}
	for _, c := range s.d.Host.Bus.Chains() {
		p := &backendv1.TriggerPoint{Id: c.Point, Kind: c.Kind, Doc: c.Doc}
		for _, h := range c.Handlers {
			p.Handlers = append(p.Handlers, &backendv1.TriggerHandler{Owner: h.Owner, Priority: int64(h.Priority), Seq: h.Seq})
		}
		res.Points = append(res.Points, p)
	}
	return connect.NewResponse(res), nil
}

func (s *daemonService) Events(ctx context.Context, req *connect.Request[backendv1.EventsRequest], stream *connect.ServerStream[backendv1.Event]) error {
	sub := s.d.Host.Events.Subscribe(req.Msg.GetProfile())
	defer sub.Close()
	// Tell the client the stream is established, so that it can rely on
	// receiving every event published from now on.
	if err := stream.Send(eventMessage(core.Event{Type: "stream.started", Time: time.Now()})); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if sub.Lagged() {
					return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("event stream fell behind by more than its buffer; reconnect"))
				}
				return nil
			}
			if err := stream.Send(eventMessage(ev)); err != nil {
				return err
			}
		}
	}
}

func eventMessage(ev core.Event) *backendv1.Event {
	data, err := json.Marshal(ev.Data)
	if err != nil || ev.Data == nil {
		data = []byte("{}")
	}
	return &backendv1.Event{Type: ev.Type, Profile: ev.Profile, Time: timestamppb.New(ev.Time), DataJson: data}
}
