package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "example.org/backend/plugin-sdk"
)

// logBuffer is a concurrency-safe JSON slog sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// duplicateKeys returns the keys that appear twice in one object of the
// JSON text line (nested objects included).
func duplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	var dups []string
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := kt.(string)
				if seen[k] {
					dups = append(dups, k)
				}
				seen[k] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return dups, walk()
}

// lines returns the raw log lines.
func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// records returns the logged records.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func startHelper(t *testing.T, mode string, cfg Config) (*Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Name = "echo"
	cfg.Cmd = helperCmd(mode)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c, logs
}

func TestDescribeAndParse(t *testing.T) {
	ctx := context.Background()
	c, _ := startHelper(t, "echo", Config{})
	if c.Pid() <= 0 || c.Pid() == os.Getpid() || c.ProtocolVersion() != 1 {
		t.Errorf("pid %d protocol %d", c.Pid(), c.ProtocolVersion())
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "echo" || d.Version != "1.2.3" || d.SDKVersion != sdk.Version || len(d.Analysers) != 1 || d.Analysers[0].Parser != "echo" ||
		len(d.Params) != 1 || d.Params[0].Type != sdk.ParamInt {
		t.Errorf("describe = %+v", d)
	}
	res, err := c.Parse(ctx, sdk.ParseRequest{Items: []sdk.Item{{ID: "a", Publisher: "p@x", Payload: []byte("<x/>")}, {ID: "panic"}, {ID: "b"}}})
	if err == nil || len(res) != 0 || !strings.Contains(err.Error(), "panic in Parse: boom") {
		t.Fatalf("a panicking parser: %v %v", res, err)
	}
	res, err = c.Parse(ctx, sdk.ParseRequest{Items: []sdk.Item{{ID: "a", Publisher: "p@x", Payload: []byte("<x/>")}, {ID: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || string(res[0].JSON) != `{"batch":2,"id":"a","len":4,"publisher":"p@x"}` || res[1].SearchText != "text b" {
		t.Errorf("results = %+v", res)
	}
	if _, err := c.Match(ctx, sdk.MatchRequest{Node: "n"}); !errors.Is(err, ErrUnimplemented) {
		t.Errorf("match on a plugin without Match: %v", err)
	}
	if err := c.Configure(ctx, "alice", map[string]string{"echo.n": "2"}); err != nil {
		t.Errorf("configure without a handler: %v", err)
	}
}

// TestOnCall: every call is reported once with its method, and a failed
// call with its error.
func TestOnCall(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	c, _ := startHelper(t, "echo", Config{OnCall: func(method string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, method+":"+strconv.FormatBool(err == nil))
		if d < 0 {
			t.Errorf("negative duration for %s", method)
		}
	}})
	ctx := context.Background()
	_ = c.Ping(ctx)
	_, _ = c.Describe(ctx)
	_ = c.Configure(ctx, "alice", map[string]string{"echo.n": "2"})
	_, _ = c.Match(ctx, sdk.MatchRequest{Node: "n"})
	_, _ = c.Parse(ctx, sdk.ParseRequest{Items: []sdk.Item{{ID: "a"}}})
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(calls, " "); got != "ping:true describe:true configure:true match:false parse:true" {
		t.Errorf("calls = %q", got)
	}
}

func TestMergeArgs(t *testing.T) {
	got := fmt.Sprint(merge([]any{"plugin", "echo"}, []any{"plugin", "echo", "items", 2, "plugin", "other", "items", 3}))
	if got != "[plugin echo items 2 reported_plugin other reported_items 3]" {
		t.Errorf("merge = %s", got)
	}
}

func TestLogsRouted(t *testing.T) {
	c, logs := startHelper(t, "echo", Config{})
	if _, err := c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "stdout"}}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"parsing batch": false, "stray line on stdout": false, "stray line on stderr": false}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range logs.records(t) {
			if _, ok := want[r["msg"].(string)]; ok && r["plugin"] == "echo" {
				want[r["msg"].(string)] = true
				if r["msg"] == "parsing batch" && r["items"] != float64(1) {
					t.Errorf("fields lost: %v", r)
				}
			}
		}
		if want["parsing batch"] && want["stray line on stdout"] && want["stray line on stderr"] {
			// The plugin's lines carry its own "plugin" attribute: the
			// host's record has the key once.
			for _, l := range logs.lines() {
				if dups, err := duplicateKeys(l); err != nil || len(dups) > 0 {
					t.Errorf("log line with duplicate keys %v (%v): %s", dups, err, l)
				}
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("log lines not routed under plugin=echo: %v\nlogs: %v", want, logs.records(t))
}

func TestCrashMidCall(t *testing.T) {
	c, _ := startHelper(t, "echo", Config{})
	_, err := c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "crash"}}})
	if !errors.Is(err, ErrPluginDown) {
		t.Fatalf("crash: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the crash")
	}
	if !c.Exited() {
		t.Error("Exited is false")
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrPluginDown) {
		t.Errorf("ping after crash: %v", err)
	}
}

func TestHangTimesOut(t *testing.T) {
	c, _ := startHelper(t, "echo", Config{CallTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Parse(ctx, sdk.ParseRequest{Items: []sdk.Item{{ID: "hang"}}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang with a deadline: %v", err)
	}
	// No deadline on the context: the client's CallTimeout applies.
	_, err = c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "hang"}}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang without a deadline: %v", err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("plugin unusable after a timeout: %v", err)
	}
}

func TestChecksumPin(t *testing.T) {
	sum, err := fileSHA256Hex(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	c, _ := startHelper(t, "echo", Config{SHA256: sum})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Kill()
	// A second start with a pin: SecureConfig is not reusable, Start makes a
	// fresh one.
	c2, _ := startHelper(t, "echo", Config{SHA256: strings.ToUpper(sum)})
	c2.Kill()

	wrong := strings.Repeat("ab", 32)
	_, err = Start(context.Background(), Config{Name: "echo", Cmd: helperCmd("echo"), SHA256: wrong, Logger: discard()})
	var ce *ChecksumError
	if !errors.As(err, &ce) || !errors.Is(err, ErrChecksumMismatch) || ce.Got != sum || ce.Want != wrong {
		t.Fatalf("wrong pin: %v", err)
	}
	if !strings.Contains(err.Error(), "refusing to run") || !strings.Contains(err.Error(), sum) {
		t.Errorf("message: %v", err)
	}
	if _, err := Start(context.Background(), Config{Name: "echo", Cmd: helperCmd("echo"), SHA256: "xyz"}); err == nil {
		t.Error("a malformed pin was accepted")
	}
}

func fileSHA256Hex(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestStartErrors(t *testing.T) {
	tests := []struct {
		mode string
		want []string
	}{
		{"v2", []string{"plugin echo", "speaks plugin protocol 2, this daemon speaks 1", "upgrade the daemon"}},
		{"stdout", []string{"plugin echo", "wrote to stdout before the handshake", `"debug: starting up"`}},
		{"exit", []string{"plugin echo", "exited during start-up", "fatal: configuration file missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			_, err := Start(context.Background(), Config{Name: "echo", Cmd: helperCmd(tt.mode), Logger: discard(), StartTimeout: 20 * time.Second})
			if err == nil {
				t.Fatal("started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.mode == "v2" {
				var ve *VersionError
				if !errors.As(err, &ve) || ve.PluginVersion != 2 {
					t.Errorf("not a VersionError: %#v", err)
				}
			}
		})
	}
	old := &VersionError{Plugin: "x", Path: "/p", PluginVersion: 0, HostVersions: []int{1}}
	if !strings.Contains(old.Error(), "upgrade the plugin") {
		t.Errorf("old plugin message: %v", old)
	}
	_, err := Start(context.Background(), Config{Name: "nope", Cmd: exec.Command("/nonexistent/backend-plugin-nope"), Logger: discard()})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing executable: %v", err)
	}
}

func TestLargeBatches(t *testing.T) {
	ctx := context.Background()
	c, _ := startHelper(t, "echo", Config{})
	// One item above gRPC's default 4 MiB limit.
	big := bytes.Repeat([]byte("x"), 5<<20)
	res, err := c.Parse(ctx, sdk.ParseRequest{Items: []sdk.Item{{ID: "big", Payload: big}}})
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("5 MiB item: %v %+v", err, res)
	}
	// 10 MiB in 40 items of 256 KiB: split by bytes (4 MiB a call).
	var items []sdk.Item
	for i := range 40 {
		items = append(items, sdk.Item{ID: strconv.Itoa(i), Payload: make([]byte, 256<<10)})
	}
	res, err = c.Parse(ctx, sdk.ParseRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	checkBatches(t, res, items, func(batch int) bool { return batch*(256<<10) <= DefaultMaxBatchBytes })
	// 250 small items: split by count.
	items = items[:0]
	for i := range 250 {
		items = append(items, sdk.Item{ID: "s" + strconv.Itoa(i), Payload: []byte("<p/>")})
	}
	res, err = c.Parse(ctx, sdk.ParseRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	checkBatches(t, res, items, func(batch int) bool { return batch <= DefaultMaxBatchItems })
}

// checkBatches checks that every item got its own result, in order, and
// that each call's batch size passed ok.
func checkBatches(t *testing.T, res []sdk.ParseResult, items []sdk.Item, ok func(int) bool) {
	t.Helper()
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	calls := 0
	for i, r := range res {
		var m struct {
			ID    string
			Batch int
		}
		if r.Err != nil || json.Unmarshal(r.JSON, &m) != nil || m.ID != items[i].ID || r.ID != items[i].ID {
			t.Fatalf("result %d = %+v", i, r)
		}
		if !ok(m.Batch) {
			t.Fatalf("a call carried %d items", m.Batch)
		}
		if i == 0 || m.Batch != 0 {
			calls++
		}
	}
	if calls < 2 {
		t.Errorf("not split")
	}
}

func TestSplitBatches(t *testing.T) {
	mk := func(sizes ...int) []sdk.Item {
		var out []sdk.Item
		for i, s := range sizes {
			out = append(out, sdk.Item{ID: strconv.Itoa(i), Payload: make([]byte, s-itemOverhead-len(strconv.Itoa(i)))})
		}
		return out
	}
	tests := []struct {
		name               string
		items              []sdk.Item
		maxItems, maxBytes int
		want               []int
	}{
		{"empty", nil, 2, 100, nil},
		{"by count", mk(20, 20, 20, 20, 20), 2, 1000, []int{2, 2, 1}},
		{"by bytes", mk(40, 40, 40, 40), 10, 100, []int{2, 2}},
		{"oversize alone", mk(20, 500, 20), 10, 100, []int{1, 1, 1}},
		{"exact fit", mk(50, 50, 50), 10, 100, []int{2, 1}},
	}
	for _, tt := range tests {
		var got []int
		n := 0
		for _, b := range splitBatches(tt.items, tt.maxItems, tt.maxBytes) {
			got = append(got, len(b))
			n += len(b)
		}
		if !slicesEqual(got, tt.want) || n != len(tt.items) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNoOrphanAfterHostSIGKILL kills a host with SIGKILL and checks that its
// plugin goes too: through Pdeathsig (host.Start), and through the SDK's
// parent watchdog alone (a host that set no Pdeathsig).
func TestNoOrphanAfterHostSIGKILL(t *testing.T) {
	for _, mode := range []string{"host", "host-nopdeathsig"} {
		t.Run(mode, func(t *testing.T) {
			host := helperCmd(mode)
			host.Env = append(host.Env, os.Environ()...)
			out, err := host.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			host.Stderr = os.Stderr
			if err := host.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				_ = host.Process.Kill()
				t.Fatalf("host gave no plugin pid: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || !alive(pid) {
				t.Fatalf("plugin pid %q not running", line)
			}
			if err := host.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = host.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for alive(pid) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("plugin %d still running 5 s after its host was killed", pid)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// alive reports whether pid runs (a zombie waiting for a reaper is dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}
