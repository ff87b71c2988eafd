package sdk

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"example.org/backend/plugin-sdk/internal/wire"
)

type loggerKey struct{}

var defaultLogger atomic.Pointer[slog.Logger]

func init() {
	defaultLogger.Store(slog.New(newHCLogHandler(newHCLogger("plugin", os.Stderr))))
}

// Logger returns the logger of a handler's context: it writes JSON lines on
// the plugin's stderr, which the daemon parses and re-logs under the
// plugin's name. Outside a handler it returns the plugin's logger. Never log
// secret parameter values.
func Logger(ctx context.Context) *slog.Logger {
	if ctx != nil {
		if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
			return l
		}
	}
	return defaultLogger.Load()
}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// newHCLogger returns the hclog JSON logger whose lines go-plugin's host side
// understands, at the level the host asked for.
func newHCLogger(name string, out *os.File) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(wire.EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: out, JSONFormat: true, Level: level})
}

// hclogHandler is a slog.Handler writing through an hclog.Logger.
type hclogHandler struct {
	l      hclog.Logger
	attrs  []any
	prefix string
}

func newHCLogHandler(l hclog.Logger) *hclogHandler { return &hclogHandler{l: l} }

func toHCLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return toHCLevel(l) >= h.l.GetLevel()
}

func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	h.l.Log(toHCLevel(r.Level), r.Message, args...)
	return nil
}

func (h *hclogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any(nil), h.attrs...)
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *hclogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

func appendAttr(args []any, prefix string, a slog.Attr) []any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return args
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			args = appendAttr(args, p, g)
		}
		return args
	}
	key := strings.TrimPrefix(prefix+a.Key, "@")
	if err, ok := a.Value.Any().(error); ok {
		return append(args, key, err.Error())
	}
	return append(args, key, a.Value.Any())
}
