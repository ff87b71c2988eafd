package pubsubcache

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/core/jid"
	"example.org/backend/plugins/xep0060"
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
	j, err := a.p.Sync(ctx, req.Msg.GetProfile(), req.Msg.GetService(), req.Msg.GetNode())
	if err != nil {
		return apiError(err)
	}
	ch, stop := j.Watch()
	defer stop()
	if !req.Msg.GetWait() {
		return stream.Send(progressProto(<-ch))
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
		if err := stream.Send(progressProto(pr)); err != nil || pr.Done {
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
