// Package host is the daemon's side of the plugin protocol: it starts a
// plugin process through hashicorp/go-plugin (gRPC, AutoMTLS, optional sha256
// pin, parent-death signal, logs routed into slog) and calls it through a
// Client. Restarting plugins is the caller's job (core/pluginhost): a Client
// whose process exited stays dead.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdk "example.org/backend/plugin-sdk"
	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
	"example.org/backend/plugin-sdk/internal/wire"
)

// Defaults of Config.
const (
	DefaultStartTimeout  = 10 * time.Second
	DefaultCallTimeout   = 30 * time.Second
	DefaultMaxBatchItems = 100
	DefaultMaxBatchBytes = 4 << 20
)

// itemOverhead is the wire overhead counted per item, on top of its fields.
const itemOverhead = 16

// maxItemBytes is the largest item sent to a plugin (alone in its batch):
// the message limit minus room for the request's other fields.
const maxItemBytes = wire.MaxMessageSize - 64<<10

// errTooLarge is wrapped by the errors of calls whose request or answer
// exceeded the message limit.
var errTooLarge = errors.New("message too large")

// Config says how to start a plugin.
type Config struct {
	// Name names the plugin in logs and errors (the configured or
	// discovered name; the plugin's own name comes from Describe).
	Name string
	// Cmd is the unstarted command: a third-party executable, or the daemon
	// re-executing itself with a hidden subcommand. Start adds the
	// environment go-plugin needs, and on Linux a parent-death signal.
	Cmd *exec.Cmd
	// SHA256, when set, pins the executable's sha256 (hex): a mismatch
	// refuses the plugin before it runs (ChecksumError).
	SHA256 string
	// Logger receives go-plugin's and the plugin's logs, with a "plugin"
	// attribute; nil means slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds the handshake (default DefaultStartTimeout).
	StartTimeout time.Duration
	// CallTimeout bounds a call whose context has no deadline (default
	// DefaultCallTimeout).
	CallTimeout time.Duration
	// MaxBatchItems and MaxBatchBytes cap one Parse call; Parse splits
	// larger requests (defaults DefaultMaxBatchItems, DefaultMaxBatchBytes).
	MaxBatchItems, MaxBatchBytes int
	// OnCall, when set, is told about every call to the plugin once it
	// returns: the method (one of the Method* constants), how long it took
	// and its error (nil on success). The daemon feeds its metrics with it.
	// It must be quick.
	OnCall func(method string, elapsed time.Duration, err error)
}

// The methods of the plugin protocol, as Config.OnCall names them.
const (
	MethodPing      = "ping"
	MethodDescribe  = "describe"
	MethodConfigure = "configure"
	MethodMatch     = "match"
	MethodParse     = "parse"
)

// Description is what a plugin says about itself.
type Description struct {
	// Name and Version are the plugin's own.
	Name, Version string
	// ProtocolVersion is the protocol version the plugin speaks.
	ProtocolVersion int
	// SDKVersion is the version of the SDK it was built with ("" if none).
	SDKVersion string
	// Analysers are the analysers it provides.
	Analysers []sdk.Analyser
	// Params are the per-profile parameters it declares.
	Params []sdk.Param
}

// Client calls one running plugin. It is safe for concurrent use.
type Client struct {
	name     string
	pc       *plugin.Client // nil in process (sdktest)
	proc     *os.Process    // the started process (nil in process)
	rpc      pluginv1.PluginClient
	done     <-chan struct{}
	closeFn  func()
	killOnce sync.Once
	pid      int
	protocol int

	callTimeout        time.Duration
	maxItems, maxBytes int
	onCall             func(method string, elapsed time.Duration, err error)
}

func init() {
	wire.NewHostClient = func(name string, rpc pluginv1.PluginClient, closeFn func()) any {
		done := make(chan struct{})
		var once sync.Once
		c := &Client{name: name, rpc: rpc, done: done, protocol: wire.ProtocolVersion}
		c.closeFn = func() {
			once.Do(func() {
				close(done)
				closeFn()
			})
		}
		c.setLimits(Config{})
		return c
	}
}

func (c *Client) setLimits(cfg Config) {
	c.callTimeout = cmpOr(cfg.CallTimeout, DefaultCallTimeout)
	c.maxItems = cmpOr(cfg.MaxBatchItems, DefaultMaxBatchItems)
	c.maxBytes = min(cmpOr(cfg.MaxBatchBytes, DefaultMaxBatchBytes), maxItemBytes)
	c.onCall = cfg.OnCall
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// hostVersions are the protocol versions this host speaks.
var hostVersions = []int{wire.ProtocolVersion}

// Start starts the plugin and completes the handshake. The process is killed
// when Kill is called, when CleanupAll runs, or (Linux) when the daemon dies.
// Errors name the plugin and say what to do: *ChecksumError for a pin
// mismatch, *VersionError for a protocol mismatch.
func Start(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Name == "" {
		return nil, errors.New("start plugin: no name")
	}
	if cfg.Cmd == nil {
		return nil, fmt.Errorf("start plugin %s: no command", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.StartTimeout = cmpOr(cfg.StartTimeout, DefaultStartTimeout)
	if dl, ok := ctx.Deadline(); ok {
		cfg.StartTimeout = min(cfg.StartTimeout, max(time.Until(dl), time.Millisecond))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start plugin %s: %w", cfg.Name, err)
	}
	var secure *plugin.SecureConfig
	if cfg.SHA256 != "" {
		sum, err := hex.DecodeString(strings.TrimSpace(cfg.SHA256))
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("plugin %s: sha256 pin %q is not 64 hex digits", cfg.Name, cfg.SHA256)
		}
		// A fresh SecureConfig per start: Check never resets its hash.
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	log := cfg.Logger.With("plugin", cfg.Name)
	cmd := cfg.Cmd
	setParentDeathSignal(cmd)
	cmd.Env = append(cmd.Env, wire.EnvLogLevel+"="+levelName(log))
	stderr := &tailWriter{max: 10}
	hp := &hostPlugin{}
	versions := map[int]plugin.PluginSet{}
	for _, v := range hostVersions {
		versions[v] = plugin.PluginSet{wire.PluginSetName: hp}
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake(),
		VersionedPlugins: versions,
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           newHCLogAdapter(cfg.Logger, "plugin", cfg.Name),
		Stderr:           stderr,
		SyncStdout:       &lineWriter{log: log, level: slog.LevelInfo, args: []any{"stream", "stdout"}},
		SyncStderr:       &lineWriter{log: log, level: slog.LevelWarn, args: []any{"stream", "stderr"}},
		GRPCDialOptions:  wire.DialOptions(),
	})
	proto, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, startError(&cfg, cmd.Path, hostVersions, stderr, err)
	}
	raw, err := proto.Dispense(wire.PluginSetName)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("plugin %s: open the plugin service: %w", cfg.Name, err)
	}
	d := raw.(*dispensed)
	c := &Client{name: cfg.Name, pc: pc, proc: cmd.Process, rpc: d.rpc, done: d.done, protocol: pc.NegotiatedVersion()}
	if rc := pc.ReattachConfig(); rc != nil {
		c.pid = rc.Pid
	}
	c.setLimits(cfg)
	return c, nil
}

// CleanupAll kills every plugin process started by Start that is still
// running. Call it on every exit path of the daemon (defer in main and in
// the signal handler).
func CleanupAll() { plugin.CleanupClients() }

// hostPlugin is the go-plugin plugin of the host side.
type hostPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

type dispensed struct {
	rpc  pluginv1.PluginClient
	done <-chan struct{}
}

func (hostPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host side serves nothing")
}

// GRPCClient's ctx is cancelled by go-plugin when the process exits.
func (hostPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &dispensed{rpc: pluginv1.NewPluginClient(conn), done: ctx.Done()}, nil
}

// Name returns the name the client was started under.
func (c *Client) Name() string { return c.name }

// Pid returns the plugin's process id (0 in process).
func (c *Client) Pid() int { return c.pid }

// ProtocolVersion returns the negotiated protocol version.
func (c *Client) ProtocolVersion() int { return c.protocol }

// Done is closed when the plugin process has exited (or the client was
// killed).
func (c *Client) Done() <-chan struct{} { return c.done }

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
	}
	return c.pc != nil && c.pc.Exited()
}

// killGrace bounds a graceful Kill: go-plugin's own Kill asks the plugin to
// shut down over gRPC and waits without limit for that call, so a stopped or
// wedged process would block it forever.
const killGrace = 3 * time.Second

// Kill stops the plugin: a graceful shutdown request, then SIGKILL (after
// 2 s if the plugin answered, after 3 s if it did not). It returns once the
// process has been reaped.
func (c *Client) Kill() {
	c.killOnce.Do(func() {
		if c.pc != nil {
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.pc.Kill()
			}()
			select {
			case <-done:
			case <-time.After(killGrace):
				if c.proc != nil {
					_ = c.proc.Kill() // safe after a reap: os.Process knows
				}
				<-done
			}
		}
		if c.closeFn != nil {
			c.closeFn()
		}
	})
}

// call runs fn with the per-call timeout and maps its error; method is the
// protocol method (Config.OnCall), op the same with details for messages.
func (c *Client) call(ctx context.Context, method, op string, fn func(ctx context.Context) error) error {
	if c.onCall == nil {
		return c.callTimed(ctx, op, fn)
	}
	start := time.Now()
	err := c.callTimed(ctx, op, fn)
	c.onCall(method, time.Since(start), err)
	return err
}

func (c *Client) callTimed(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if c.Exited() {
		return fmt.Errorf("plugin %s: %s: %w", c.name, op, ErrPluginDown)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.callTimeout)
		defer cancel()
	}
	err := fn(ctx)
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("plugin %s: %s: %w", c.name, op, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("plugin %s: %s: %w (%s)", c.name, op, ErrPluginDown, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("plugin %s: %s: no answer in time: %w", c.name, op, context.DeadlineExceeded)
	case codes.Canceled:
		if ctx.Err() != nil {
			return fmt.Errorf("plugin %s: %s: %w", c.name, op, ctx.Err())
		}
		if c.Exited() {
			return fmt.Errorf("plugin %s: %s: %w", c.name, op, ErrPluginDown)
		}
		return fmt.Errorf("plugin %s: %s: cancelled: %w", c.name, op, context.Canceled)
	case codes.ResourceExhausted:
		return fmt.Errorf("plugin %s: %s: %w: %s", c.name, op, errTooLarge, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("plugin %s: %s: %w: %s", c.name, op, ErrUnimplemented, st.Message())
	}
	if c.Exited() {
		return fmt.Errorf("plugin %s: %s: %w (%s)", c.name, op, ErrPluginDown, st.Message())
	}
	return fmt.Errorf("plugin %s: %s: %s", c.name, op, st.Message())
}

// Ping checks that the plugin answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, MethodPing, "ping", func(ctx context.Context) error {
		_, err := c.rpc.Ping(ctx, &pluginv1.PingRequest{})
		return err
	})
}

// Describe asks the plugin for its identity, analysers and parameters.
func (c *Client) Describe(ctx context.Context) (Description, error) {
	var resp *pluginv1.DescribeResponse
	err := c.call(ctx, MethodDescribe, "describe", func(ctx context.Context) (err error) {
		resp, err = c.rpc.Describe(ctx, &pluginv1.DescribeRequest{HostProtocolVersion: uint32(c.protocol)})
		return err
	})
	if err != nil {
		return Description{}, err
	}
	d := Description{Name: resp.GetName(), Version: resp.GetVersion(), ProtocolVersion: int(resp.GetProtocolVersion()), SDKVersion: resp.GetSdkVersion()}
	for _, a := range resp.GetAnalysers() {
		d.Analysers = append(d.Analysers, sdk.Analyser{
			Name: a.GetName(), Type: a.GetType(), Subtype: a.GetSubtype(), NodePrefix: a.GetNodePrefix(),
			PayloadNamespace: a.GetPayloadNamespace(), ToSync: a.GetToSync(), Parser: a.GetParser(),
			Priority: a.GetPriority(), IndexedPaths: a.GetIndexedPaths(), Match: a.GetHasMatch(),
		})
	}
	for _, p := range resp.GetParams() {
		d.Params = append(d.Params, sdk.Param{
			Category: p.GetCategory(), Name: p.GetName(), Type: sdk.ParamType(wire.ParamTypeFromProto(p.GetType())),
			Default: p.GetDefaultValue(), Min: p.Min, Max: p.Max, Choices: p.GetChoices(),
			Help: p.GetHelp(), NeedsReconnect: p.GetNeedsReconnect(),
		})
	}
	return d, nil
}

// Configure sends the parameter values of a profile (every key the plugin
// declared, canonical text); values nil means the profile was deleted.
func (c *Client) Configure(ctx context.Context, profile string, values map[string]string) error {
	return c.call(ctx, MethodConfigure, "configure profile "+profile, func(ctx context.Context) error {
		_, err := c.rpc.Configure(ctx, &pluginv1.ConfigureRequest{Profile: profile, Values: values, Deleted: values == nil})
		return err
	})
}

// Match asks whether an analyser that declared Match applies to a node.
func (c *Client) Match(ctx context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
	preq := &pluginv1.MatchRequest{Profile: req.Profile, Service: req.Service, Node: req.Node, Analyser: req.Analyser}
	if it := req.FirstItem; it != nil {
		preq.FirstItem = &pluginv1.Item{Id: it.ID, Publisher: it.Publisher, Payload: it.Payload}
	}
	var resp *pluginv1.MatchResponse
	err := c.call(ctx, MethodMatch, "match node "+req.Node, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Match(ctx, preq)
		return err
	})
	if err != nil {
		return sdk.MatchResult{}, err
	}
	return sdk.MatchResult{Drop: resp.GetDrop(), Subtype: resp.GetSubtype()}, nil
}

// Parse parses items, in as many calls as the batch limits need (the
// context's deadline, or the call timeout, applies to each call). It returns
// one result per item, in order. An item too large for one message fails
// alone. On a call error it returns the results of the calls that succeeded
// (a prefix of the items) with the error; errors.Is(err, ErrPluginDown) says
// the plugin is not running.
func (c *Client) Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
	out := make([]sdk.ParseResult, 0, len(req.Items))
	for _, batch := range splitBatches(req.Items, c.maxItems, c.maxBytes) {
		if len(batch) == 1 && itemSize(batch[0]) > maxItemBytes {
			out = append(out, sdk.ParseResult{ID: batch[0].ID, Err: fmt.Errorf("item is %d bytes, more than a plugin call carries (%d)", itemSize(batch[0]), maxItemBytes)})
			continue
		}
		res, err := c.parseBatch(ctx, req, batch)
		if err != nil {
			if len(batch) == 1 && errors.Is(err, errTooLarge) {
				out = append(out, sdk.ParseResult{ID: batch[0].ID, Err: err})
				continue
			}
			return out, err
		}
		out = append(out, res...)
	}
	return out, nil
}

func (c *Client) parseBatch(ctx context.Context, req sdk.ParseRequest, items []sdk.Item) ([]sdk.ParseResult, error) {
	preq := &pluginv1.ParseRequest{
		Profile: req.Profile, Service: req.Service, Node: req.Node,
		Analyser: req.Analyser, Parser: req.Parser,
		Items: make([]*pluginv1.Item, len(items)),
	}
	for i, it := range items {
		preq.Items[i] = &pluginv1.Item{Id: it.ID, Publisher: it.Publisher, Payload: it.Payload}
	}
	var resp *pluginv1.ParseResponse
	err := c.call(ctx, MethodParse, fmt.Sprintf("parse %d items of %s", len(items), req.Node), func(ctx context.Context) (err error) {
		resp, err = c.rpc.Parse(ctx, preq)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResults()) != len(items) {
		return nil, fmt.Errorf("plugin %s: parse: %d results for %d items", c.name, len(resp.GetResults()), len(items))
	}
	out := make([]sdk.ParseResult, len(items))
	for i, r := range resp.GetResults() {
		res := sdk.ParseResult{ID: items[i].ID}
		switch {
		case r.GetId() != items[i].ID:
			res.Err = fmt.Errorf("plugin answered for item %q instead", r.GetId())
		case r.GetError() != "":
			res.Err = errors.New(r.GetError())
		case !sdk.IsJSONObject(r.GetJson()):
			res.Err = errors.New("plugin returned something that is not a JSON object")
		default:
			res.JSON, res.SearchText = r.GetJson(), r.GetSearchText()
		}
		out[i] = res
	}
	return out, nil
}

func itemSize(it sdk.Item) int {
	return len(it.ID) + len(it.Publisher) + len(it.Payload) + itemOverhead
}

// splitBatches cuts items into batches of at most maxItems items and
// maxBytes bytes; an item larger than maxBytes is alone in its batch.
func splitBatches(items []sdk.Item, maxItems, maxBytes int) [][]sdk.Item {
	var out [][]sdk.Item
	start, size := 0, 0
	for i, it := range items {
		s := itemSize(it)
		if i > start && (i-start >= maxItems || size+s > maxBytes) {
			out = append(out, items[start:i])
			start, size = i, 0
		}
		size += s
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out
}
