package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"runtime/debug"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
	"example.org/backend/plugin-sdk/internal/wire"
)

func init() {
	wire.NewServer = func(p any) (pluginv1.PluginServer, grpc.UnaryServerInterceptor, error) {
		pl, ok := p.(*Plugin)
		if !ok {
			return nil, nil, fmt.Errorf("not a *sdk.Plugin: %T", p)
		}
		if err := pl.Validate(); err != nil {
			return nil, nil, err
		}
		log := Logger(context.Background()).With("plugin", pl.Name)
		return newServer(pl), recoverInterceptor(log), nil
	}
}

// server serves one Plugin over the wire protocol.
type server struct {
	pluginv1.UnimplementedPluginServer
	p     *Plugin
	cfgMu sync.Mutex // serialises Configure
}

func newServer(p *Plugin) *server { return &server{p: p} }

// recoverInterceptor turns a panic in a handler into an Internal error
// (instead of killing the process) and gives handlers their logger.
func recoverInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		method := path.Base(info.FullMethod)
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				resp, err = nil, status.Errorf(codes.Internal, "panic in %s: %v", method, r)
			}
		}()
		return handler(withLogger(ctx, log), req)
	}
}

// handlerError converts an author's error into a gRPC status.
func handlerError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.Unknown, "%s: %v", what, err)
}

func (s *server) Describe(_ context.Context, _ *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	resp := &pluginv1.DescribeResponse{
		Name: s.p.Name, Version: s.p.Version, ProtocolVersion: ProtocolVersion, SdkVersion: Version,
	}
	for _, a := range s.p.Analysers {
		resp.Analysers = append(resp.Analysers, &pluginv1.Analyser{
			Name: a.Name, Type: a.Type, Subtype: a.Subtype, NodePrefix: a.NodePrefix,
			PayloadNamespace: a.PayloadNamespace, ToSync: a.ToSync, Parser: a.Parser,
			Priority: a.Priority, IndexedPaths: a.IndexedPaths, HasMatch: a.Match,
		})
	}
	for _, p := range s.p.Params {
		resp.Params = append(resp.Params, &pluginv1.Param{
			Category: p.Category, Name: p.Name, Type: wire.ParamTypeToProto(string(p.Type)),
			DefaultValue: p.Default, Min: p.Min, Max: p.Max, Choices: p.Choices,
			Help: p.Help, NeedsReconnect: p.NeedsReconnect,
		})
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	if s.p.Configure == nil {
		return &pluginv1.ConfigureResponse{}, nil
	}
	values := req.GetValues()
	if req.GetDeleted() {
		values = nil
	} else if values == nil {
		values = map[string]string{}
	}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if err := s.p.Configure(ctx, req.GetProfile(), values); err != nil {
		return nil, handlerError(ctx, "configure profile "+req.GetProfile(), err)
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (s *server) Match(ctx context.Context, req *pluginv1.MatchRequest) (*pluginv1.MatchResponse, error) {
	if s.p.Match == nil {
		return nil, status.Errorf(codes.Unimplemented, "plugin %s has no Match", s.p.Name)
	}
	mr := MatchRequest{Profile: req.GetProfile(), Service: req.GetService(), Node: req.GetNode(), Analyser: req.GetAnalyser()}
	if it := req.GetFirstItem(); it != nil {
		mr.FirstItem = &Item{ID: it.GetId(), Publisher: it.GetPublisher(), Payload: it.GetPayload()}
	}
	res, err := s.p.Match(ctx, mr)
	if err != nil {
		return nil, handlerError(ctx, "match node "+req.GetNode(), err)
	}
	return &pluginv1.MatchResponse{Drop: res.Drop, Subtype: res.Subtype}, nil
}

func (s *server) Parse(ctx context.Context, req *pluginv1.ParseRequest) (*pluginv1.ParseResponse, error) {
	if s.p.Parse == nil {
		return nil, status.Errorf(codes.Unimplemented, "plugin %s has no Parse", s.p.Name)
	}
	pr := ParseRequest{
		Profile: req.GetProfile(), Service: req.GetService(), Node: req.GetNode(),
		Analyser: req.GetAnalyser(), Parser: req.GetParser(),
		Items: make([]Item, len(req.GetItems())),
	}
	for i, it := range req.GetItems() {
		pr.Items[i] = Item{ID: it.GetId(), Publisher: it.GetPublisher(), Payload: it.GetPayload()}
	}
	res, err := s.p.Parse(ctx, pr)
	if err != nil {
		return nil, handlerError(ctx, "parse", err)
	}
	if len(res) != len(pr.Items) {
		return nil, status.Errorf(codes.Internal, "plugin %s: Parse returned %d results for %d items", s.p.Name, len(res), len(pr.Items))
	}
	out := &pluginv1.ParseResponse{Results: make([]*pluginv1.ParseResult, len(res))}
	for i, r := range res {
		id := pr.Items[i].ID
		if r.ID != "" && r.ID != id {
			return nil, status.Errorf(codes.Internal, "plugin %s: Parse result %d has id %q, want %q (results must follow the order of the items)", s.p.Name, i, r.ID, id)
		}
		pres := &pluginv1.ParseResult{Id: id}
		switch {
		case r.Err != nil:
			pres.Error = r.Err.Error()
			if pres.Error == "" {
				pres.Error = "parse failed"
			}
		case r.encoded && (len(r.JSON) == 0 || r.JSON[0] != '{'), !r.encoded && !IsJSONObject(r.JSON):
			// What json.Marshal made is valid JSON: only its kind is
			// checked (the host validates everything again anyway).
			pres.Error = "parser returned something that is not a JSON object"
		default:
			pres.Json, pres.SearchText = r.JSON, r.SearchText
		}
		out.Results[i] = pres
	}
	return out, nil
}

func (s *server) Ping(context.Context, *pluginv1.PingRequest) (*pluginv1.PingResponse, error) {
	return &pluginv1.PingResponse{}, nil
}
