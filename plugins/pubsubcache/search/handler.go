package search

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	"example.org/backend/core/jid"
)

// WrapFunc builds the canonical <item/> wrapper of an item (DESIGN §5);
// the daemon passes xep0060's wire.Wrap.
type WrapFunc func(id, publisher string, payload []byte) string

// NewHandler returns the CacheService's Connect path and handler, serving
// Search with s; wrap builds the xml of items asked WithPayload.
func NewHandler(s *Searcher, wrap WrapFunc, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv1connect.NewCacheServiceHandler(&api{s: s, wrap: wrap}, opts...)
}

type api struct {
	backendv1connect.UnimplementedCacheServiceHandler
	s    *Searcher
	wrap WrapFunc
}

// QueryFromRequest converts an API request into a Query, validating its
// filters and order keys.
func QueryFromRequest(m *backendv1.CacheSearchRequest) (Query, error) {
	q := Query{
		Profiles: m.GetProfiles(), Services: jid.CanonicalEach(m.GetServices()), Nodes: m.GetNodes(),
		Types: m.GetTypes(), Subtypes: m.GetSubtypes(), ItemIDs: m.GetItemIds(),
		FTS: m.GetFts(), Offset: int(m.GetIndex()), Limit: int(m.GetLimit()), WithPayload: m.GetWithPayload(),
	}
	if m.GetIndex() < 0 || m.GetLimit() < 0 || m.GetIndex() > 1<<40 || m.GetLimit() > 1<<40 {
		return q, invalid(errors.New("index and limit must be between 0 and 2^40"))
	}
	for _, f := range m.GetFilters() {
		flt, err := NewFilter(f.GetPath(), f.GetOp(), []byte(f.GetValueJson()), false)
		if err != nil {
			return q, invalid(err)
		}
		q.Filters = append(q.Filters, flt)
	}
	for _, o := range m.GetOrderBy() {
		ord, err := newOrder(o.GetKey(), o.GetDesc())
		if err != nil {
			return q, invalid(err)
		}
		q.OrderBy = append(q.OrderBy, ord)
	}
	return q, nil
}

func (a *api) Search(ctx context.Context, req *connect.Request[backendv1.CacheSearchRequest]) (*connect.Response[backendv1.CacheSearchResponse], error) {
	q, err := QueryFromRequest(req.Msg)
	if err != nil {
		return nil, apiError(err)
	}
	found, err := a.s.Search(ctx, q)
	if err != nil {
		return nil, apiError(err)
	}
	res := &backendv1.CacheSearchResponse{Items: make([]*backendv1.CacheSearchItem, len(found.Rows)),
		SkippedUnparsed: int64(found.SkippedUnparsed), IncompleteNodes: make([]*backendv1.CacheSearchNode, len(found.IncompleteNodes))}
	for i, n := range found.IncompleteNodes {
		res.IncompleteNodes[i] = &backendv1.CacheSearchNode{Profile: n.Profile, Service: n.Service, Node: n.Node, State: n.State}
	}
	for i, r := range found.Rows {
		it := &backendv1.CacheSearchItem{Profile: r.Profile, Service: r.Service, Node: r.Node, Id: r.ItemID}
		if r.Parsed != nil {
			p := string(r.Parsed)
			it.ParsedJson = &p
		}
		if q.WithPayload && a.wrap != nil {
			x := a.wrap(r.ItemID, r.Publisher, r.Payload)
			it.Xml = &x
		}
		res.Items[i] = it
	}
	return connect.NewResponse(res), nil
}

func apiError(err error) error {
	switch {
	case errors.Is(err, ErrInvalidQuery):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrUnknownProfile):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeInternal, fmt.Errorf("cache search: %w", err))
}
