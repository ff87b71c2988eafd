package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/plugin-sdk/plugins/microblog"
)

const entry = `<entry xmlns="http://www.w3.org/2005/Atom"><title>Hello</title><category term="go"/></entry>`

func fastOptions() Options {
	return Options{
		Logger:       slog.New(slog.DiscardHandler),
		PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		MaxFailures: 3,
	}
}

func newSupervisor(t *testing.T, specs []Spec, opts Options) *Supervisor {
	t.Helper()
	s, err := New(specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func status(s *Supervisor, name string) Status {
	for _, st := range s.Plugins() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

// waitFor polls until cond holds (no wall-clock assertion: the deadline only
// bounds a broken test).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBuiltinThroughReExec(t *testing.T) {
	var started []string
	opts := fastOptions()
	opts.OnStart = func(ctx context.Context, name string, c *host.Client, d host.Description) error {
		started = append(started, name+" "+d.Version)
		return c.Configure(ctx, "alice", map[string]string{"microblog.keep_xhtml": "false"})
	}
	s := newSupervisor(t, BuiltinSpecs(subcommand, map[string]*sdk.Plugin{"microblog": nil}), opts)
	st := status(s, "microblog")
	if st.State != StateRunning || st.Version != microblog.Version || st.PID <= 0 || st.PID == os.Getpid() ||
		strings.Join(st.Analysers, ",") != "xep-0277,xep-0277-comments" || st.Restarts != 0 || !st.FirstParty {
		t.Fatalf("status = %+v", st)
	}
	if len(started) != 1 {
		t.Errorf("OnStart calls: %v", started)
	}
	c, err := s.Client("microblog")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "alice", Items: []sdk.Item{{ID: "1", Payload: []byte(entry)}}})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	var e struct {
		Content string // a title-only post: its title is its content
		Tags    []string
	}
	if err := json.Unmarshal(res[0].JSON, &e); err != nil || e.Content != "Hello" || len(e.Tags) != 1 {
		t.Errorf("parsed %s", res[0].JSON)
	}
	if d, ok := s.Description("microblog"); !ok || d.Analysers[0].NodePrefix != "urn:xmpp:microblog:0" {
		t.Errorf("description %+v", d)
	}
	if _, err := s.Client("nope"); !errors.Is(err, ErrUnknownPlugin) {
		t.Errorf("unknown plugin: %v", err)
	}
}

func TestCrashRestarts(t *testing.T) {
	s := newSupervisor(t, BuiltinSpecs(subcommand, map[string]*sdk.Plugin{"flaky": nil}), fastOptions())
	c, err := s.Client("flaky")
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	_, err = c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "crash"}}})
	if !errors.Is(err, ErrPluginDown) {
		t.Fatalf("parse on a crashing plugin: %v", err)
	}
	// The old client stays down; the supervisor starts a new process.
	if _, err := c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "x"}}}); !errors.Is(err, ErrPluginDown) {
		t.Errorf("old client after the crash: %v", err)
	}
	waitFor(t, "a restart", func() bool {
		st := status(s, "flaky")
		return st.State == StateRunning && st.Restarts == 1 && st.PID != pid
	})
	c, err = s.Client("flaky")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "x"}}})
	if err != nil || res[0].Err != nil || !strings.Contains(string(res[0].JSON), strconv.Itoa(c.Pid())) {
		t.Errorf("after restart: %v %+v", err, res)
	}
	if st := status(s, "flaky"); st.LastError != "" {
		t.Errorf("last error kept after a good restart: %q", st.LastError)
	}
}

func TestDownPluginFailsFast(t *testing.T) {
	opts := fastOptions()
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour // stays down after the crash
	s := newSupervisor(t, BuiltinSpecs(subcommand, map[string]*sdk.Plugin{"flaky": nil}), opts)
	c, _ := s.Client("flaky")
	_, _ = c.Parse(context.Background(), sdk.ParseRequest{Items: []sdk.Item{{ID: "crash"}}})
	waitFor(t, "restarting state", func() bool { return status(s, "flaky").State == StateRestarting })
	if _, err := s.Client("flaky"); !errors.Is(err, ErrPluginDown) {
		t.Errorf("client of a down plugin: %v", err)
	}
	if st := status(s, "flaky"); st.PID != 0 || !strings.Contains(st.LastError, "exited") {
		t.Errorf("status = %+v", st)
	}
	// An explicit restart does not wait for the backoff.
	if err := s.Restart(context.Background(), "flaky"); err != nil {
		t.Fatal(err)
	}
	if st := status(s, "flaky"); st.State != StateRunning || st.Restarts != 1 {
		t.Errorf("after Restart: %+v", st)
	}
}

func TestHungPluginIsReplaced(t *testing.T) {
	s := newSupervisor(t, BuiltinSpecs(subcommand, map[string]*sdk.Plugin{"microblog": nil}), fastOptions())
	pid := status(s, "microblog").PID
	// A stopped process answers nothing, not even go-plugin's shutdown.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new process", func() bool {
		st := status(s, "microblog")
		return st.State == StateRunning && st.PID != pid && st.Restarts == 1
	})
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Error("the hung process was left running")
	}
}

func TestRestartAndClose(t *testing.T) {
	s, err := New(BuiltinSpecs(subcommand, map[string]*sdk.Plugin{"microblog": nil, "flaky": nil}), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := status(s, "microblog").PID
	if err := s.Restart(context.Background(), "microblog"); err != nil {
		t.Fatal(err)
	}
	st := status(s, "microblog")
	if st.PID == before || st.Restarts != 1 || st.State != StateRunning || alive(before) {
		t.Errorf("after restart: %+v (old pid alive: %v)", st, alive(before))
	}
	if err := s.Restart(context.Background(), "nope"); !errors.Is(err, ErrUnknownPlugin) {
		t.Errorf("restart unknown: %v", err)
	}
	var pids []int
	for _, st := range s.Plugins() {
		pids = append(pids, st.PID)
	}
	s.Close()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("plugin %d survived Close", pid)
		}
	}
	for _, st := range s.Plugins() {
		if st.State != StateStopped || st.PID != 0 {
			t.Errorf("after Close: %+v", st)
		}
	}
	if _, err := s.Client("microblog"); !errors.Is(err, ErrPluginDown) {
		t.Errorf("client after Close: %v", err)
	}
}

func TestFailedPlugins(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "backend-plugin-third")
	// A third-party plugin: here a script running the test binary's plugin.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec '"+exe+"' "+subcommand+" microblog\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(mustRead(t, script))
	good := hex.EncodeToString(sum[:])
	specs, _, err := Discover([]string{dir}, map[string]string{"third": good}, nil)
	if err != nil || len(specs) != 1 {
		t.Fatal(specs, err)
	}
	crashing := Spec{Name: "exits", Cmd: func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "echo 'no config' >&2; exit 1") }}
	missing := Spec{Name: "missing", Cmd: func() *exec.Cmd { return exec.Command(filepath.Join(dir, "backend-plugin-missing")) }}
	pinned := Spec{Name: "pinned", Cmd: specs[0].Cmd, SHA256: strings.Repeat("0", 64)}
	s := newSupervisor(t, []Spec{specs[0], crashing, missing, pinned}, fastOptions())

	if st := status(s, "third"); st.State != StateRunning || st.Version != microblog.Version {
		t.Errorf("pinned third-party plugin: %+v", st)
	}
	if st := status(s, "pinned"); st.State != StateFailed || !strings.Contains(st.LastError, "refusing to run") || st.Restarts != 0 {
		t.Errorf("wrong pin: %+v", st)
	}
	if st := status(s, "missing"); st.State != StateFailed || st.Restarts != 0 {
		t.Errorf("missing executable: %+v", st)
	}
	waitFor(t, "the crashing plugin to fail", func() bool { return status(s, "exits").State == StateFailed })
	if st := status(s, "exits"); st.Restarts != 2 || !strings.Contains(st.LastError, "no config") {
		t.Errorf("crashing plugin: %+v", st)
	}
	if _, err := s.Client("exits"); !errors.Is(err, ErrPluginDown) {
		t.Errorf("client of a failed plugin: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiscover(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	write := func(dir, name string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(d1, "backend-plugin-alpha", 0o755)
	write(d1, "backend-plugin-noexec", 0o644)
	write(d1, "backend-plugin-Bad", 0o755)
	write(d1, "backend-plugin-open", 0o777)
	write(d1, "other-tool", 0o755)
	write(d2, "backend-plugin-alpha", 0o755) // shadowed by d1
	write(d2, "backend-plugin-beta", 0o755)
	if err := os.Mkdir(filepath.Join(d2, "backend-plugin-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(d2, "backend-plugin-beta"), filepath.Join(d2, "backend-plugin-link")); err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	specs, _, err := Discover([]string{d1, filepath.Join(d1, "absent"), d2}, map[string]string{"beta": "ab", "ghost": "cd"}, log)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sp := range specs {
		got = append(got, sp.Name+"="+sp.Cmd().Path+"#"+sp.SHA256)
	}
	want := []string{
		"alpha=" + filepath.Join(d1, "backend-plugin-alpha") + "#",
		"beta=" + filepath.Join(d2, "backend-plugin-beta") + "#ab",
		"link=" + filepath.Join(d2, "backend-plugin-link") + "#",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("specs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []string{"not executable", "must be lowercase", "writable by group or others", "not a regular file", "found first", "ghost"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("no warning %q in:\n%s", w, logs)
		}
	}
	if _, _, err := Discover([]string{filepath.Join(d1, "backend-plugin-alpha")}, nil, nil); err == nil {
		t.Error("a file as plugin directory was accepted")
	}
}

// TestDiscoverOwnership: plugin files other users control are refused
// (logged with path and reason, and returned): a file of another (unused)
// uid, a group-writable file, a world-writable directory, a directory of
// another uid; a root-owned sticky directory is accepted for the daemon's
// user's files only. The directories are 0755 and outside /tmp.
func TestDiscoverOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another uid needs root")
	}
	const stranger = 54321 // no such user: only the number matters
	base, err := os.MkdirTemp(".", "discover-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	base, _ = filepath.Abs(base)
	mkdir := func(name string, mode os.FileMode, uid int) string {
		t.Helper()
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, -1); err != nil {
			t.Fatal(err)
		}
		return d
	}
	write := func(dir, name string, mode os.FileMode, uid int) {
		t.Helper()
		p := filepath.Join(dir, "backend-plugin-"+name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
	me := os.Geteuid()
	safe := mkdir("safe", 0o755, me)
	write(safe, "good", 0o755, me)
	write(safe, "foreign", 0o755, stranger)
	write(safe, "groupw", 0o775, me)
	open := mkdir("open", 0o777, me)
	write(open, "inopen", 0o755, me)
	theirs := mkdir("theirs", 0o755, stranger)
	write(theirs, "intheirs", 0o755, me)
	sticky := mkdir("sticky", 0o777|os.ModeSticky, 0)
	write(sticky, "sticky-mine", 0o755, me)
	write(sticky, "sticky-foreign", 0o755, stranger)
	logs := &strings.Builder{}
	specs, refused, err := Discover([]string{safe, open, theirs, sticky}, nil, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sp := range specs {
		got = append(got, sp.Name)
	}
	if strings.Join(got, ",") != "good,sticky-mine" {
		t.Errorf("accepted %v, want good,sticky-mine", got)
	}
	want := map[string]string{
		"foreign":        "owned by uid 54321",
		"groupw":         "writable by group or others",
		"inopen":         "writable by group or others (mode 777)",
		"intheirs":       "owned by uid 54321",
		"sticky-foreign": "owned by uid 54321",
	}
	for _, r := range refused {
		if w, ok := want[r.Name]; !ok || !strings.Contains(r.Reason, w) || !strings.HasSuffix(r.Path, "backend-plugin-"+r.Name) {
			t.Errorf("refused %+v, want reason %q", r, w)
		}
		if !strings.Contains(logs.String(), r.Path) {
			t.Errorf("refusal of %s not logged with its path:\n%s", r.Path, logs)
		}
		delete(want, r.Name)
	}
	if len(want) > 0 {
		t.Errorf("not refused: %v", want)
	}
}

func TestServeBuiltinUnknown(t *testing.T) {
	err := ServeBuiltin("nope", registry())
	if err == nil || !strings.Contains(err.Error(), "flaky, microblog") {
		t.Errorf("unknown built-in: %v", err)
	}
	cmd := SelfCommand(subcommand, "microblog")()
	if exe, _ := os.Executable(); cmd.Path != exe || strings.Join(cmd.Args[1:], " ") != subcommand+" microblog" {
		t.Errorf("self command = %v", cmd.Args)
	}
}

func TestNewRejects(t *testing.T) {
	cmd := func() *exec.Cmd { return exec.Command("true") }
	for _, specs := range [][]Spec{{{Name: "", Cmd: cmd}}, {{Name: "a"}}, {{Name: "a", Cmd: cmd}, {Name: "a", Cmd: cmd}}} {
		if _, err := New(specs, Options{}); err == nil {
			t.Errorf("accepted %+v", specs)
		}
	}
}

// alive reports whether pid runs (a zombie is dead).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// TestBeside: a first-party plugin's own executable beside the daemon's is
// used only when nobody else could have placed or changed it.
func TestBeside(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "backend")
	// This test's own binary stands for the daemon's build and the plugin's.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	goExe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, mode os.FileMode, content []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("backend", 0o755, goExe)
	good := write("backend-plugin-good", 0o755, goExe)
	write("backend-plugin-groupw", 0o775, goExe)
	write("backend-plugin-noexec", 0o644, goExe)
	script := write("backend-plugin-script", 0o755, []byte("#!/bin/sh\n"))
	link := filepath.Join(t.TempDir(), "backend")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ exe, name, path, reason string }{
		{exe, "good", good, ""},
		{link, "good", good, ""}, // the directory of the real executable
		{exe, "missing", "", ""},
		{exe, "groupw", filepath.Join(dir, "backend-plugin-groupw"), "writable by group or others"},
		{exe, "noexec", filepath.Join(dir, "backend-plugin-noexec"), "not executable"},
		{exe, "script", script, "not a Go executable"},
	} {
		path, reason := Beside(c.exe, c.name)
		if path != c.path || c.reason == "" && reason != "" || !strings.Contains(reason, c.reason) {
			t.Errorf("Beside(%s, %s) = %q, %q; want %q, %q", c.exe, c.name, path, reason, c.path, c.reason)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, reason := Beside(exe, "good"); !strings.Contains(reason, "writable by group or others") {
		t.Errorf("in a world-writable directory: %q", reason)
	}
}

// TestBuildMismatch: a first-party plugin's executable must come from the
// daemon's build.
func TestBuildMismatch(t *testing.T) {
	bi := func(goVersion string, kv ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: goVersion}
		for i := 0; i+1 < len(kv); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return b
	}
	rev := func(r, modified string) []string {
		return []string{"vcs", "git", "vcs.revision", r, "vcs.modified", modified}
	}
	for _, c := range []struct {
		name           string
		daemon, plugin *debug.BuildInfo
		want           string
	}{
		{"same revision", bi("go1.26.8", rev("abc", "false")...), bi("go1.26.8", rev("abc", "false")...), ""},
		{"same modified revision", bi("go1.26.8", rev("abc", "true")...), bi("go1.26.8", rev("abc", "true")...), ""},
		{"unstamped", bi("go1.26.8"), bi("go1.26.8"), ""},
		{"other revision", bi("go1.26.8", rev("abc", "false")...), bi("go1.26.8", rev("def", "false")...), "built from revision def, the daemon from revision abc"},
		{"modified", bi("go1.26.8", rev("abc", "false")...), bi("go1.26.8", rev("abc", "true")...), "(modified)"},
		{"stamped daemon", bi("go1.26.8", rev("abc", "false")...), bi("go1.26.8"), "an unstamped build"},
		{"other Go", bi("go1.26.8"), bi("go1.25.1"), "built with go1.25.1, the daemon with go1.26.8"},
	} {
		got := buildMismatch(c.daemon, c.plugin)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
