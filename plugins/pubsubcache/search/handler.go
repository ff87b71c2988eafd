package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	backendv1 "example.org/backend/api/backendv1"
	"example.org/backend/api/backendv1/backendv1connect"
	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/api/backendv2/backendv2connect"
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

// NewHandlerV2 returns the backend.v2 CacheService's path and handler:
// Search streams its answer in bounded batches, parsed data as
// google.protobuf.Struct.
func NewHandlerV2(s *Searcher, wrap WrapFunc, opts ...connect.HandlerOption) (string, http.Handler) {
	return backendv2connect.NewCacheServiceHandler(&apiV2{s: s, wrap: wrap}, opts...)
}

type apiV2 struct {
	s    *Searcher
	wrap WrapFunc
}

// Bounds of one message of a streamed search answer (as for items).
const (
	chunkItems = 256
	chunkBytes = 1 << 20
)

// QueryFromV2 converts a v2 request (filter values as google.protobuf.Value;
// an unset value is JSON null).
func QueryFromV2(m *backendv2.CacheSearchRequest) (Query, error) {
	v1 := &backendv1.CacheSearchRequest{
		Profiles: m.GetProfiles(), Services: m.GetServices(), Nodes: m.GetNodes(), Types: m.GetTypes(), Subtypes: m.GetSubtypes(),
		ItemIds: m.GetItemIds(), Fts: m.GetFts(), Index: m.GetIndex(), Limit: m.GetLimit(), WithPayload: m.GetWithPayload(),
	}
	for _, f := range m.GetFilters() {
		v := []byte("null")
		if f.GetValue() != nil {
			b, err := protojson.Marshal(f.GetValue())
			if err != nil {
				return Query{}, invalid(fmt.Errorf("filter %s %s: value: %w", f.GetPath(), f.GetOp(), err))
			}
			v = b
		}
		v1.Filters = append(v1.Filters, &backendv1.CacheFilter{Path: f.GetPath(), Op: f.GetOp(), ValueJson: string(v)})
	}
	for _, o := range m.GetOrderBy() {
		v1.OrderBy = append(v1.OrderBy, &backendv1.CacheOrder{Key: o.GetKey(), Desc: o.GetDesc()})
	}
	return QueryFromRequest(v1)
}

// ParsedStruct converts an item's parsed JSON (an object) to a Struct.
func ParsedStruct(parsed []byte) (*structpb.Struct, error) {
	var obj map[string]any
	if err := json.Unmarshal(parsed, &obj); err != nil {
		return nil, fmt.Errorf("parsed data is not a JSON object: %w", err)
	}
	return structpb.NewStruct(obj)
}

func (a *apiV2) Search(ctx context.Context, req *connect.Request[backendv2.CacheSearchRequest], stream *connect.ServerStream[backendv2.CacheSearchChunk]) error {
	q, err := QueryFromV2(req.Msg)
	if err != nil {
		return apiError(err)
	}
	found, err := a.s.Search(ctx, q)
	if err != nil {
		return apiError(err)
	}
	h := &backendv2.CacheSearchHeader{SkippedUnparsed: int64(found.SkippedUnparsed), Items: int64(len(found.Rows)),
		IncompleteNodes: make([]*backendv2.CacheSearchNode, len(found.IncompleteNodes))}
	for i, n := range found.IncompleteNodes {
		h.IncompleteNodes[i] = &backendv2.CacheSearchNode{Profile: n.Profile, Service: n.Service, Node: n.Node, State: n.State}
	}
	msg := &backendv2.CacheSearchChunk{Header: h}
	size := 0
	for i := range found.Rows {
		r := &found.Rows[i]
		it := &backendv2.CacheSearchItem{Profile: r.Profile, Service: r.Service, Node: r.Node, Id: r.ItemID}
		n := len(r.Parsed) + 64
		if r.Parsed != nil {
			if it.Parsed, err = ParsedStruct(r.Parsed); err != nil {
				return connect.NewError(connect.CodeInternal, fmt.Errorf("item %s of %s: %w", r.ItemID, r.Node, err))
			}
		}
		if q.WithPayload && a.wrap != nil {
			x := a.wrap(r.ItemID, r.Publisher, r.Payload)
			it.Xml = &x
			n += len(x)
		}
		if len(msg.Items) > 0 && (len(msg.Items) >= chunkItems || size+n > chunkBytes) {
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg, size = &backendv2.CacheSearchChunk{}, 0
		}
		msg.Items = append(msg.Items, it)
		size += n
	}
	return stream.Send(msg)
}
