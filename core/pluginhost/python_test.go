package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"example.org/backend/internal/testsvc"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
)

// syncBuffer is a log sink safe for the supervisor's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPythonPluginSupervised: a plugin written with the Python SDK and
// packed into a plugin directory is discovered, started, described and
// called like a Go one; the supervisor replaces it when it stops answering
// its health pings (SIGSTOP) and when it is killed (SIGKILL) in the middle
// of a batch, and kills it on Close.
func TestPythonPluginSupervised(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	testsvc.PackPythonPlugin(t, "plugin-sdk/python/tests/testplugin.py", dir, "pytest")
	specs, refused, err := Discover([]string{dir}, nil, nil)
	if err != nil || len(specs) != 1 || specs[0].Name != "pytest" || specs[0].FirstParty || len(refused) != 0 {
		t.Fatalf("discover: %+v %+v %v", specs, refused, err)
	}
	opts := fastOptions()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.OnStart = func(ctx context.Context, _ string, c *host.Client, _ host.Description) error {
		return c.Configure(ctx, "alice", map[string]string{"pytest.prefix": "configured at start"})
	}
	s := newSupervisor(t, specs, opts)
	st := status(s, "pytest")
	if st.State != StateRunning || st.Version != "2.3.4" || !alive(st.PID) ||
		strings.Join(st.Analysers, ",") != "pytest-echo,pytest-notes,pytest-match,pytest-atom" {
		t.Fatalf("status = %+v", st)
	}
	parse := func() (pid float64, prefix string) {
		t.Helper()
		c, err := s.Client("pytest")
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "alice", Parser: "notes",
			Items: []sdk.Item{{ID: "1", Payload: []byte(`<note xmlns="urn:test:pynotes">hi</note>`)}}})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
		var m struct {
			PID    float64
			Prefix string
		}
		if err := json.Unmarshal(res[0].JSON, &m); err != nil {
			t.Fatal(err)
		}
		return m.PID, m.Prefix
	}
	if pid, prefix := parse(); int(pid) != st.PID || prefix != "configured at start" {
		t.Errorf("parsed by %v with prefix %q; the plugin is %d", pid, prefix, st.PID)
	}

	// Health: a process that stops answering pings is replaced.
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new process after the hang", func() bool {
		n := status(s, "pytest")
		return n.State == StateRunning && n.PID != st.PID && n.Restarts == 1
	})
	if alive(st.PID) {
		_ = syscall.Kill(st.PID, syscall.SIGKILL)
		t.Error("the hung process was left running")
	}

	// SIGKILL in the middle of a batch: the call fails as "plugin down",
	// and a new process (configured again) serves the next one.
	second := status(s, "pytest")
	c, err := s.Client("pytest")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		_, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "alice", Parser: "echo", Items: []sdk.Item{{ID: "hang"}}})
		started <- err
	}()
	waitFor(t, "the batch to reach the plugin", func() bool {
		return strings.Contains(logs.String(), "msg=\"parsing batch\"")
	})
	if err := syscall.Kill(second.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-started; !errors.Is(err, ErrPluginDown) {
		t.Errorf("the batch of the killed process: %v", err)
	}
	waitFor(t, "a new process after the kill", func() bool {
		n := status(s, "pytest")
		return n.State == StateRunning && n.PID != second.PID && n.Restarts == 2
	})
	third := status(s, "pytest")
	if pid, prefix := parse(); int(pid) != third.PID || prefix != "configured at start" {
		t.Errorf("after the restarts: parsed by %v with prefix %q; the plugin is %d", pid, prefix, third.PID)
	}
	s.Close()
	if alive(third.PID) {
		t.Error("the plugin outlived Close")
	}
}
