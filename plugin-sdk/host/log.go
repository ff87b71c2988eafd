package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is an hclog.Logger writing into an *slog.Logger: go-plugin
// logs through it, and re-logs through it each JSON line the plugin writes
// on stderr, so everything lands in the daemon's log under the plugin's name.
// A record never carries a key twice: a key the plugin's line repeats (its
// own "plugin" attribute, say) is dropped when its value is the same and
// renamed reported_KEY when it differs.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any // key, value pairs with distinct string keys
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHCLogAdapter logs into l with the attributes args (key, value pairs),
// which l must not carry already.
func newHCLogAdapter(l *slog.Logger, args ...any) *hclogAdapter {
	return &hclogAdapter{l: l, args: merge(nil, args)}
}

// merge appends the pairs of more to args, dropping a repeated key with the
// same value and renaming one with another value reported_KEY.
func merge(args, more []any) []any {
	out := append([]any(nil), args...)
	index := func(k string) int {
		for i := 0; i+1 < len(out); i += 2 {
			if out[i] == k {
				return i
			}
		}
		return -1
	}
	for i := 0; i+1 < len(more); i += 2 {
		k, ok := more[i].(string)
		if !ok {
			k = "extra"
		}
		v := more[i+1]
		for j := index(k); j >= 0; j = index(k) {
			if fmt.Sprint(out[j+1]) == fmt.Sprint(v) {
				k = ""
				break
			}
			k = "reported_" + k
		}
		if k != "" {
			out = append(out, k, v)
		}
	}
	return out
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// cleanArgs drops the fields go-plugin and hclog add that slog records
// already carry (time, logger name) and strips the '@' of the others.
func cleanArgs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		k, ok := args[i].(string)
		if !ok {
			out = append(out, args[i], args[i+1])
			continue
		}
		switch k {
		case "timestamp", "@module", "@timestamp":
			continue
		}
		out = append(out, strings.TrimPrefix(k, "@"), args[i+1])
	}
	if len(args)%2 == 1 {
		out = append(out, "extra", args[len(args)-1])
	}
	return out
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	sl := toSlogLevel(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, sl) {
		return
	}
	a.l.Log(ctx, sl, msg, merge(a.args, cleanArgs(args))...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.l.Enabled(context.Background(), toSlogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	n := *a
	n.args = merge(a.args, cleanArgs(args))
	return &n
}

func (a *hclogAdapter) Name() string { return a.name }

// Named keeps the logger: go-plugin names the sub-logger of plugin output
// after the executable, which for the daemon's re-exec is the daemon itself;
// the plugin's name is already an attribute.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	n := *a
	if n.name == "" {
		n.name = name
	} else {
		n.name += "." + name
	}
	return &n
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	n := *a
	n.name = name
	return &n
}

// SetLevel does nothing: the level is the slog handler's.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineWriter{log: a.l, level: slog.LevelInfo, args: a.args}
}

// levelName is the name of the lowest level l keeps, for the plugin's
// logger (wire.EnvLogLevel).
func levelName(l *slog.Logger) string {
	return strings.ToLower(newHCLogAdapter(l).GetLevel().String())
}

// lineWriter logs each line written to it.
type lineWriter struct {
	log   *slog.Logger
	level slog.Level
	args  []any
	mu    sync.Mutex
	buf   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if line != "" {
			w.log.Log(context.Background(), w.level, line, w.args...)
		}
	}
	if len(w.buf) > 64<<10 { // a very long line without newline
		w.log.Log(context.Background(), w.level, string(w.buf), w.args...)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// tailWriter keeps the last lines written to it (the plugin's raw stderr),
// for start-up error messages.
type tailWriter struct {
	mu    sync.Mutex
	lines []string
	part  []byte
	max   int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.part[:i])); line != "" {
			if len(line) > 500 {
				line = line[:500] + "…"
			}
			w.lines = append(w.lines, line)
			if len(w.lines) > w.max {
				w.lines = w.lines[len(w.lines)-w.max:]
			}
		}
		w.part = w.part[i+1:]
	}
	if len(w.part) > 4096 {
		w.part = w.part[len(w.part)-4096:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := w.lines
	if s := strings.TrimSpace(string(w.part)); s != "" {
		lines = append(lines[:len(lines):len(lines)], s)
	}
	return strings.Join(lines, "\n")
}
