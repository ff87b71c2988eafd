package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the backend binary: with
// BACKEND_TEST_MAIN=1 it runs main() instead of the tests, so process-level
// behaviour (signals, exit codes) is tested without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("BACKEND_TEST_MAIN") == "1" {
		main()
		return
	}
	code := m.Run()
	servers.StopAll()
	os.Exit(code)
}

// env is an isolated environment: HOME, XDG dirs and the socket in a short
// temp dir.
type env struct {
	dir    string
	socket string
	vars   []string
	// logs is the stderr of the last daemon started by serve.
	logs *logBuffer
	// daemon is the last daemon started by serve.
	daemon *exec.Cmd
}

func newEnv(t testing.TB) *env {
	d, err := os.MkdirTemp("/tmp", "bc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	e := &env{dir: d, socket: filepath.Join(d, "run", "backend.sock")}
	e.vars = []string{"HOME=" + d, "XDG_CONFIG_HOME=" + filepath.Join(d, "config"), "XDG_DATA_HOME=" + filepath.Join(d, "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(d, "run"), "PATH=" + os.Getenv("PATH")}
	return e
}

func (e *env) lookup(k string) (string, bool) {
	for _, kv := range e.vars {
		if key, v, _ := strings.Cut(kv, "="); key == k {
			return v, true
		}
	}
	return "", false
}

// cli runs one client command in-process.
func (e *env) cli(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &errb)
	a.lookup = e.lookup
	code = a.execute(args)
	return out.String(), errb.String(), code
}

// serve starts `backend serve` as a subprocess, logging in JSON, and
// waits until the socket answers; it returns the process and how long
// readiness took. When the test ends, every line the daemon wrote must be
// one JSON object without a repeated key.
func (e *env) serve(t testing.TB, args ...string) (*exec.Cmd, <-chan struct{}, *logBuffer, time.Duration) {
	t.Helper()
	exe := os.Args[0] // this test binary, running main() (BACKEND_TEST_MAIN)
	if v, ok := e.lookup("BACKEND_TEST_EXE"); ok {
		exe = v // a daemon binary built by the test (footprint figures)
	}
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	cmd.Env = append(append([]string{"BACKEND_LOG_FORMAT=json"}, e.vars...), "BACKEND_TEST_MAIN=1")
	logs := &logBuffer{}
	cmd.Stderr = logs
	e.logs, e.daemon = logs, cmd
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		checkJSONLog(t, logs.String())
	})
	for {
		if _, _, code := e.cli(t, "status"); code == exitOK {
			return cmd, exited, logs, time.Since(begin)
		}
		select {
		case <-exited:
			t.Fatalf("daemon exited before it was ready (%v); logs:\n%s", cmd.ProcessState, logs.String())
		default:
		}
		if time.Since(begin) > 60*time.Second {
			t.Fatalf("daemon not ready after 60s; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeStatusAndSignal(t *testing.T) {
	e := newEnv(t)
	cmd, exited, logs, ready := e.serve(t)
	t.Logf("ready after %v (target: under 1s)", ready)

	out, _, code := e.cli(t, "status", "-o", "json")
	if code != exitOK {
		t.Fatalf("status exit %d", code)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json %q: %v", out, err)
	}
	for _, k := range []string{"version", "uptime_s", "profiles", "plugins", "counters"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status lacks %q: %s", k, out)
		}
	}
	if c, _ := st["counters"].(map[string]any); c == nil || c["pubsub_items_requests"] != float64(0) {
		t.Errorf("counters = %v", st["counters"])
	}
	out, _, code = e.cli(t, "triggers", "list", "-o", "json")
	if code != exitOK || !strings.HasPrefix(out, `{"points":[`) {
		t.Errorf("triggers list: %d %q", code, out)
	}
	if out, _, code := e.cli(t, "status"); code != exitOK || !strings.Contains(out, "pubsub_items_requests") {
		t.Errorf("status table: %d %q", code, out)
	}

	// A second daemon on the same socket is refused and the first keeps working.
	second := exec.Command(os.Args[0], "serve", "--data-dir", filepath.Join(e.dir, "other"))
	second.Env = append(append([]string{}, e.vars...), "BACKEND_TEST_MAIN=1")
	msg, err := second.CombinedOutput()
	if second.ProcessState.ExitCode() != exitFailed || !strings.Contains(string(msg), "another daemon is already running") {
		t.Errorf("second daemon: %v, exit %d, %s", err, second.ProcessState.ExitCode(), msg)
	}
	if _, _, code := e.cli(t, "status"); code != exitOK {
		t.Error("first daemon stopped answering after a second one was refused")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-exited
	if !cmd.ProcessState.Success() {
		t.Fatalf("after SIGTERM: %v; logs:\n%s", cmd.ProcessState, logs)
	}
	if _, err := os.Stat(e.socket); !os.IsNotExist(err) {
		t.Errorf("socket still there after SIGTERM: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	e := newEnv(t)
	_, stderr, code := e.cli(t, "status")
	if code != exitUnreachable || !strings.Contains(stderr, "backend serve") || !strings.Contains(stderr, e.socket) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	out, _, code := e.cli(t, "status", "-o", "json")
	var v struct {
		Error struct{ Code, Message string }
	}
	if code != exitUnreachable || json.Unmarshal([]byte(out), &v) != nil || v.Error.Code != "unreachable" || v.Error.Message == "" {
		t.Errorf("json: exit %d, %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"status", "--bogus"},
		{"nosuchcommand"},
		{"triggers"},
		{"triggers", "nope"},
		{"status", "-o", "xml"},
		{"status", "extra-arg"},
	} {
		_, stderr, code := e.cli(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d (stderr %q), want %d", args, code, stderr, exitUsage)
		}
	}
	_, stderr, _ := e.cli(t, "status", "--bogus")
	if !strings.Contains(stderr, "--bogus") {
		t.Errorf("unknown flag not named: %q", stderr)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	e := newEnv(t)
	f := filepath.Join(e.dir, "bad.toml")
	os.WriteFile(f, []byte("[log]\nlevel = \"info\"\nfrobnicate = 1\n"), 0o600)
	_, stderr, code := e.cli(t, "serve", "--config", f)
	if code != exitFailed || !strings.Contains(stderr, `"log.frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestConfigReference(t *testing.T) {
	e := newEnv(t)
	out, _, code := e.cli(t, "config", "reference")
	if code != exitOK || !strings.Contains(out, "`BACKEND_DATA_DIR`") || !strings.Contains(out, "`api.tcp_address`") {
		t.Errorf("exit %d, %q", code, out)
	}
}

// TestConfigReferenceDocIsCurrent keeps docs/configuration.md equal to what
// the code generates.
func TestConfigReferenceDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := writeConfigReference(&b); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Error("docs/configuration.md is stale: run `go run ./cmd/backend config reference > docs/configuration.md`")
	}
}

// TestMigrateStatusWithoutDaemon reads the migration state of a database
// that does not exist yet, then of one a daemon created, with no daemon
// running.
func TestMigrateStatusWithoutDaemon(t *testing.T) {
	e := newEnv(t)
	type status struct {
		Driver  string   `json:"driver"`
		Current uint     `json:"current"`
		Head    uint     `json:"head"`
		Dirty   bool     `json:"dirty"`
		Applied []string `json:"applied"`
		Pending []string `json:"pending"`
	}
	read := func() status {
		t.Helper()
		out, stderr, code := e.cli(t, "migrate", "status", "-o", "json")
		if code != exitOK {
			t.Fatalf("migrate status: exit %d, %s%s", code, out, stderr)
		}
		var s status
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return s
	}
	before := read()
	if before.Driver != "sqlite3" || before.Current != 0 || before.Head == 0 || len(before.Pending) < 2 || len(before.Applied) != 0 {
		t.Errorf("fresh: %+v", before)
	}
	cmd, exited, _, _ := e.serve(t)
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	after := read()
	if after.Current != after.Head || after.Dirty || len(after.Pending) != 0 || len(after.Applied) != len(before.Pending) {
		t.Errorf("after serve: %+v", after)
	}
	st, err := os.Stat(filepath.Join(e.dir, "data", "backend", "backend.db"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("database file: %v %v", err, st)
	}
}
