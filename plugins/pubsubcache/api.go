package pubsubcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/jid"
	"example.org/backend/plugins/xep0060"
	"example.org/backend/triggers"
)

// api implements backendv1connect.PubSubCacheServiceHandler.
type api struct{ p *Plugin }

func apiError(err error) error {
	switch {
	case errors.Is(err, ErrNotCached):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, ErrUnsupported):
		return connect.NewError(connect.CodeUnimplemented, err)
	case errors.Is(err, errUnknownProfile):
		return connect.NewError(connect.CodeNotFound, errors.New(err.Error()+" (see `backend profile list`)"))
	}
	return xep0060.APIError(err)
}

func (a *api) Get(ctx context.Context, req *connect.Request[backendv1.PubSubItemsRequest]) (*connect.Response[backendv1.PubSubItemsPage], error) {
	page, err := a.p.Get(ctx, xep0060.ItemsRequestFromProto(req.Msg))
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(xep0060.PageToProto(page)), nil
}

func progressProto(pr Progress) *backendv1.PubSubCacheSyncProgress {
	m := &backendv1.PubSubCacheSyncProgress{Profile: pr.Profile, Service: pr.Service, Node: pr.Node, State: string(pr.State),
		Items: int64(pr.Items), Error: pr.Err, Done: pr.Done, ParsePending: int64(pr.ParsePending), Fresh: pr.Fresh}
	if pr.Total >= 0 {
		t := int64(pr.Total)
		m.Total = &t
	}
	return m
}

func (a *api) Sync(ctx context.Context, req *connect.Request[backendv1.PubSubCacheSyncRequest], stream *connect.ServerStream[backendv1.PubSubCacheSyncProgress]) error {
	return a.sync(ctx, req.Msg, func(pr Progress) error { return stream.Send(progressProto(pr)) })
}

// sync runs or joins a sync and sends its progress: the first message
// only without wait, else every message until the end.
func (a *api) sync(ctx context.Context, m *backendv1.PubSubCacheSyncRequest, send func(Progress) error) error {
	j, err := a.p.Sync(ctx, m.GetProfile(), m.GetService(), m.GetNode())
	if err != nil {
		return apiError(err)
	}
	ch, stop := j.Watch()
	defer stop()
	if !m.GetWait() {
		return send(<-ch)
	}
	for {
		var pr Progress
		select {
		case pr = <-ch:
		case <-j.Done():
			// The job ended: what is still queued, then the final state.
			select {
			case pr = <-ch:
			default:
				pr = j.Progress()
				pr.Done = true
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := send(pr); err != nil || pr.Done {
			return err
		}
	}
}

func (a *api) Status(ctx context.Context, req *connect.Request[backendv1.PubSubCacheStatusRequest]) (*connect.Response[backendv1.PubSubCacheStatusResponse], error) {
	st, err := a.p.Status(ctx, req.Msg.GetProfile(), req.Msg.GetService(), req.Msg.GetNode())
	if err != nil {
		return nil, apiError(err)
	}
	out := &backendv1.PubSubCacheStatusResponse{Nodes: make([]*backendv1.PubSubCacheNode, 0, len(st))}
	for _, s := range st {
		m := &backendv1.PubSubCacheNode{Profile: s.Profile, Service: s.Service, Node: s.Node, Analyser: s.Analyser, Type: s.Type,
			Subtype: s.Subtype, State: s.State, Fresh: s.Fresh, Items: int64(s.Items), Attempts: int64(s.Attempts), LastError: s.LastError,
			ParsePending: int64(s.ParsePending), CapacitySource: s.CapacitySource}
		if s.Capacity != nil {
			c := int64(*s.Capacity)
			m.Capacity = &c
		}
		if s.LastSync != nil {
			v := s.LastSync.Unix()
			m.LastSync = &v
		}
		out.Nodes = append(out.Nodes, m)
	}
	return connect.NewResponse(out), nil
}

func (a *api) Purge(ctx context.Context, req *connect.Request[backendv1.PubSubCachePurgeRequest]) (*connect.Response[backendv1.PubSubCachePurgeResponse], error) {
	m := req.Msg
	f := PurgeFilter{Profiles: m.GetProfiles(), Services: jid.CanonicalEach(m.GetServices()), Nodes: m.GetNodes(), Types: m.GetTypes(), Subtypes: m.GetSubtypes()}
	if m.CreatedBefore != nil {
		t := time.Unix(*m.CreatedBefore, 0)
		f.CreatedBefore = &t
	}
	if m.UpdatedBefore != nil {
		t := time.Unix(*m.UpdatedBefore, 0)
		f.UpdatedBefore = &t
	}
	nodes, items, err := a.p.Purge(ctx, f)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&backendv1.PubSubCachePurgeResponse{Nodes: int64(nodes), Items: int64(items)}), nil
}

func (a *api) Reset(ctx context.Context, req *connect.Request[backendv1.PubSubCacheResetRequest]) (*connect.Response[backendv1.PubSubCacheResetResponse], error) {
	if !req.Msg.GetConfirm() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("reset removes every cached node of every profile: confirm it (`backend cache reset --yes`)"))
	}
	n, err := a.p.Reset(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&backendv1.PubSubCacheResetResponse{Nodes: int64(n)}), nil
}

// registerAPI mounts the PubSubCacheService, v2 and the deprecated v1.
func (p *Plugin) registerAPI() error {
	h := p.h
	if h.API == nil {
		return nil
	}
	opts := h.API.HandlerOptions(connect.WithSendMaxBytes(xep0060.MaxMessageBytes))
	path, handler := backendv2connect.NewPubSubCacheServiceHandler(&apiV2{p: p}, opts...)
	if err := h.API.Register(ImportName, path, handler); err != nil {
		return fmt.Errorf("register cache api: %w", err)
	}
	path, handler = backendv1connect.NewPubSubCacheServiceHandler(&api{p: p}, opts...)
	if err := h.API.Register(ImportName, path, handler); err != nil {
		return fmt.Errorf("register cache api v1: %w", err)
	}
	return nil
}

// SyncProgressed fires with every progress of a sync (and its end).
var SyncProgressed = triggers.NewEvent[Progress]("cache.sync",
	"Progress of a cache sync of a node (items stored so far; done, fresh and error at the end).")

// syncProgressEvent encodes a sync's progress for the API's event stream.
func syncProgressEvent(pr Progress) []*backendv2.Event {
	m := progressV2(pr)
	if !pr.Done {
		m.Error, m.Fresh = "", false
	}
	return []*backendv2.Event{{Profile: pr.Profile, Event: &backendv2.Event_CacheSync{CacheSync: m}}}
}

func progressV2(pr Progress) *backendv2.PubSubCacheSyncProgress {
	m := &backendv2.PubSubCacheSyncProgress{Profile: pr.Profile, Service: pr.Service, Node: pr.Node, State: string(pr.State),
		Items: int64(pr.Items), Error: pr.Err, Done: pr.Done, ParsePending: int64(pr.ParsePending), Fresh: pr.Fresh, Unchanged: int64(pr.Unchanged)}
	if pr.Total >= 0 {
		t := int64(pr.Total)
		m.Total = &t
	}
	return m
}

// apiV2 implements backendv2connect.PubSubCacheServiceHandler.
type apiV2 struct{ p *Plugin }

func (a *apiV2) Get(ctx context.Context, req *connect.Request[backendv2.PubSubItemsRequest], stream *connect.ServerStream[backendv2.PubSubItemsChunk]) error {
	page, err := a.p.Get(ctx, xep0060.ItemsRequestFromV2(req.Msg))
	if err != nil {
		return apiError(err)
	}
	return xep0060.SendPage(page, stream.Send)
}

func (a *apiV2) Sync(ctx context.Context, req *connect.Request[backendv2.PubSubCacheSyncRequest], stream *connect.ServerStream[backendv2.PubSubCacheSyncProgress]) error {
	v1 := &backendv1.PubSubCacheSyncRequest{Profile: req.Msg.GetProfile(), Service: req.Msg.GetService(), Node: req.Msg.GetNode(), Wait: req.Msg.GetWait()}
	return (&api{p: a.p}).sync(ctx, v1, func(pr Progress) error { return stream.Send(progressV2(pr)) })
}

func (a *apiV2) Status(ctx context.Context, req *connect.Request[backendv2.PubSubCacheStatusRequest]) (*connect.Response[backendv2.PubSubCacheStatusResponse], error) {
	st, err := a.p.Status(ctx, req.Msg.GetProfile(), req.Msg.GetService(), req.Msg.GetNode())
	if err != nil {
		return nil, apiError(err)
	}
	out := &backendv2.PubSubCacheStatusResponse{Nodes: make([]*backendv2.PubSubCacheNode, 0, len(st))}
	for _, s := range st {
		m := &backendv2.PubSubCacheNode{Profile: s.Profile, Service: s.Service, Node: s.Node, Analyser: s.Analyser, Type: s.Type,
			Subtype: s.Subtype, State: s.State, Fresh: s.Fresh, Items: int64(s.Items), Attempts: int64(s.Attempts), LastError: s.LastError,
			ParsePending: int64(s.ParsePending), CapacitySource: s.CapacitySource, ReconcileMethod: s.Method}
		if s.Capacity != nil {
			c := int64(*s.Capacity)
			m.Capacity = &c
		}
		if s.LastSync != nil {
			m.LastSync = timestamppb.New(*s.LastSync)
		}
		out.Nodes = append(out.Nodes, m)
	}
	return connect.NewResponse(out), nil
}

func (a *apiV2) Purge(ctx context.Context, req *connect.Request[backendv2.PubSubCachePurgeRequest]) (*connect.Response[backendv2.PubSubCachePurgeResponse], error) {
	m := req.Msg
	f := PurgeFilter{Profiles: m.GetProfiles(), Services: jid.CanonicalEach(m.GetServices()), Nodes: m.GetNodes(), Types: m.GetTypes(), Subtypes: m.GetSubtypes()}
	if m.CreatedBefore != nil {
		t := m.CreatedBefore.AsTime()
		f.CreatedBefore = &t
	}
	if m.UpdatedBefore != nil {
		t := m.UpdatedBefore.AsTime()
		f.UpdatedBefore = &t
	}
	nodes, items, err := a.p.Purge(ctx, f)
	if err != nil {
		return nil, apiError(err)
	}
	return connect.NewResponse(&backendv2.PubSubCachePurgeResponse{Nodes: int64(nodes), Items: int64(items)}), nil
}

func (a *apiV2) Reset(ctx context.Context, req *connect.Request[backendv2.PubSubCacheResetRequest]) (*connect.Response[backendv2.PubSubCacheResetResponse], error) {
	res, err := (&api{p: a.p}).Reset(ctx, connect.NewRequest(&backendv1.PubSubCacheResetRequest{Confirm: req.Msg.GetConfirm()}))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&backendv2.PubSubCacheResetResponse{Nodes: res.Msg.GetNodes()}), nil
}
