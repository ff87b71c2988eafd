// Package python_test tests the Python SDK (backend_plugin) from the
// daemon's side: its plugins run as real processes started by the Go host
// (go-plugin handshake, AutoMTLS, health, controller, stdio), and its
// generated code, packaging and Python unit tests are checked here so that
// `go test ./...` covers both languages. The interpreter is Debian's
// /usr/bin/python3 with python3-grpcio, python3-protobuf and
// python3-cryptography; without them the tests skip, and fail under CI=true.
package python_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	pluginv1 "example.org/backend/plugin-sdk/internal/proto/plugin/v1"
	"example.org/backend/plugin-sdk/internal/wire"
)

// Interpreter is the Python the SDK targets (the python3 first on PATH
// may be another build, without Debian's modules).
const Interpreter = "/usr/bin/python3"

var (
	pythonOnce sync.Once
	pythonErr  error
)

// requirePython skips the test when Debian's python3 with the SDK's
// modules is missing (fails under CI=true), and records the use of the
// runtime for the test summary.
func requirePython(t testing.TB) string {
	t.Helper()
	pythonOnce.Do(func() {
		out, err := exec.Command(Interpreter, "-c", "import grpc, google.protobuf, cryptography").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%s cannot import grpc, google.protobuf and cryptography (apt-get install -y python3-grpcio python3-protobuf python3-cryptography): %v %s", Interpreter, err, bytes.TrimSpace(out))
		}
	})
	if pythonErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(pythonErr)
		}
		t.Skip(pythonErr)
	}
	t.Logf("uses-server: python")
	return Interpreter
}

// sdkDir is this directory (the Python SDK's root), absolute.
func sdkDir(t testing.TB) string {
	d, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scriptCmd runs a Python plugin script with the SDK on its path.
func scriptCmd(t testing.TB, script string, env ...string) *exec.Cmd {
	py := requirePython(t)
	cmd := exec.Command(py, filepath.Join(sdkDir(t), script))
	cmd.Env = append([]string{"PYTHONPATH=" + sdkDir(t), "PYTHONDONTWRITEBYTECODE=1"}, env...)
	return cmd
}

// logBuffer collects the host's slog records (JSON), plugin lines included.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// find returns the first record whose "msg" is msg, or nil.
func (b *logBuffer) find(t testing.TB, msg string) map[string]any {
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

// waitLog waits until the host logged msg (events, not time: the deadline
// only bounds a broken test).
func (b *logBuffer) waitLog(t testing.TB, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := b.find(t, msg); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log record %q in:\n%s", msg, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t testing.TB, cmd *exec.Cmd, cfg host.Config) (*host.Client, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Cmd = cmd
	if cfg.Name == "" {
		cfg.Name = "pytest"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := host.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs)
	}
	t.Cleanup(c.Kill)
	return c, logs
}

func echoReq(ids ...string) sdk.ParseRequest {
	req := sdk.ParseRequest{Profile: "alice", Service: "pubsub.example.org", Node: "urn:test:pyecho", Analyser: "pytest-echo", Parser: "echo"}
	for _, id := range ids {
		req.Items = append(req.Items, sdk.Item{ID: id, Publisher: "romeo@example.org", Payload: []byte("<x xmlns='urn:test'>" + id + "</x>")})
	}
	return req
}

// TestProtocol drives the test plugin through every call of the protocol,
// as the daemon does: describe, configure, match, batched parse with
// per-item and whole-batch failures, ping, logs and stray output, and a
// graceful shutdown through go-plugin's controller.
func TestProtocol(t *testing.T) {
	cmd := scriptCmd(t, "tests/testplugin.py")
	c, logs := start(t, cmd, host.Config{})
	ctx := context.Background()
	if c.ProtocolVersion() != 1 || c.Pid() <= 0 {
		t.Fatalf("protocol %d pid %d", c.ProtocolVersion(), c.Pid())
	}

	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	one, max := int64(0), int64(60000)
	want := host.Description{
		Name: "pytest", Version: "2.3.4", ProtocolVersion: 1, SDKVersion: "0.1.0",
		Analysers: []sdk.Analyser{
			{Name: "pytest-echo", Type: "test", NodePrefix: "urn:test:pyecho", Parser: "echo", Priority: 5},
			{Name: "pytest-notes", Type: "note", NodePrefix: "urn:test:pynotes", ToSync: true, Parser: "notes", IndexedPaths: []string{"text"}},
			{Name: "pytest-match", Type: "test", Subtype: "plain", PayloadNamespace: "urn:test:pymatch", Match: true},
			{Name: "pytest-atom", Type: "blog", NodePrefix: "urn:test:pyatom", Parser: "atom"},
		},
		Params: []sdk.Param{
			{Category: "pytest", Name: "prefix", Type: sdk.ParamString, Help: "a text copied into every parsed item"},
			{Category: "pytest", Name: "delay_ms", Type: sdk.ParamInt, Default: "0", Min: &one, Max: &max, Help: "milliseconds the notes parser sleeps per item"},
		},
	}
	if got, exp := fmt.Sprintf("%+v", jsonOf(t, d)), fmt.Sprintf("%+v", jsonOf(t, want)); got != exp {
		t.Errorf("describe:\n got %s\nwant %s", got, exp)
	}

	if err := c.Configure(ctx, "alice", map[string]string{"pytest.prefix": "A>", "pytest.delay_ms": "0"}); err != nil {
		t.Fatal(err)
	}
	if rec := logs.waitLog(t, "configured"); rec["profile"] != "alice" || rec["plugin"] != "pytest" {
		t.Errorf("the plugin's log record, as re-logged by the host: %v", rec)
	}

	res, err := c.Parse(ctx, echoReq("a", "raise", "badjson", "nan", "b"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		if r.Err != nil {
			got = append(got, r.ID+" error: "+r.Err.Error())
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			t.Fatal(err)
		}
		if m["pid"] != float64(c.Pid()) {
			t.Errorf("parsed by pid %v, the plugin is %d", m["pid"], c.Pid())
		}
		got = append(got, fmt.Sprintf("%s %v %v %v %v %v %q", r.ID, m["id"], m["publisher"], m["len"], m["batch"], m["prefix"], r.SearchText))
	}
	exp := []string{
		`a a romeo@example.org 25 5 A> "text a"`,
		"raise error: item raise refused",
		"badjson error: parser returned something that is not a JSON object",
		"nan error: encode parsed data: Out of range float values are not JSON compliant",
		`b b romeo@example.org 25 5 A> "text b"`,
	}
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Errorf("parse:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}

	// A whole batch fails with the plugin's message; the plugin goes on.
	if _, err := c.Parse(ctx, echoReq("x", "batchfail")); err == nil || !strings.Contains(err.Error(), "parse: this batch cannot be parsed") {
		t.Errorf("failed batch: %v", err)
	}
	if rec := logs.waitLog(t, "Parse failed"); rec["level"] != "ERROR" || !strings.Contains(fmt.Sprint(rec["traceback"]), "RuntimeError: this batch cannot be parsed") {
		t.Errorf("the failed batch's log record: %v", rec)
	}
	if _, err := c.Parse(ctx, echoReq("x", "wrongid")); err == nil || !strings.Contains(err.Error(), "results must follow the order of the items") {
		t.Errorf("results out of order: %v", err)
	}

	m, err := c.Match(ctx, sdk.MatchRequest{Profile: "alice", Service: "s", Node: "n", Analyser: "pytest-match", FirstItem: &sdk.Item{ID: "i1"}})
	if err != nil || m.Drop || m.Subtype != "first:i1" {
		t.Errorf("match: %+v %v", m, err)
	}
	if m, err := c.Match(ctx, sdk.MatchRequest{Node: "n"}); err != nil || m.Subtype != "empty" {
		t.Errorf("match without a first item: %+v %v", m, err)
	}
	if m, err := c.Match(ctx, sdk.MatchRequest{Node: "n:drop"}); err != nil || !m.Drop {
		t.Errorf("match drop: %+v %v", m, err)
	}
	if err := c.Configure(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	res, err = c.Parse(ctx, echoReq("c"))
	if err != nil || !strings.Contains(string(res[0].JSON), `"prefix":""`) {
		t.Errorf("after the profile was deleted: %s %v", res[0].JSON, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// Stray prints after the handshake reach the host's log (go-plugin's
	// stdio stream), never the handshake channel.
	if _, err := c.Parse(ctx, echoReq("stdout")); err != nil {
		t.Fatal(err)
	}
	if rec := logs.waitLog(t, "stray line on stdout"); rec["stream"] != "stdout" || rec["level"] != "INFO" {
		t.Errorf("stdout record: %v", rec)
	}
	if rec := logs.waitLog(t, "stray line on stderr"); rec["stream"] != "stderr" || rec["level"] != "WARN" {
		t.Errorf("stderr record: %v", rec)
	}

	// Kill asks the plugin to shut down (GRPCController.Shutdown): it exits
	// by itself, with status 0, before go-plugin would SIGKILL it.
	c.Kill()
	if st := cmd.ProcessState; st == nil || st.ExitCode() != 0 {
		t.Errorf("after a graceful shutdown: %v\n%s", st, logs)
	}
	if strings.Contains(logs.String(), "plugin failed to exit gracefully") || strings.Contains(logs.String(), "stdio service not available") {
		t.Errorf("go-plugin's complaints in the log:\n%s", logs)
	}
}

func jsonOf(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCrashHangAndLimits: a crash mid-batch is ErrPluginDown and the
// process is gone; a hung batch ends at its deadline and the plugin stays
// usable; messages beyond gRPC's 4 MiB default go through both ways.
func TestCrashHangAndLimits(t *testing.T) {
	c, _ := start(t, scriptCmd(t, "tests/testplugin.py"), host.Config{})
	ctx := context.Background()

	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.Parse(hctx, echoReq("hang"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung batch: %v", err)
	}
	if _, err := c.Parse(ctx, echoReq("after")); err != nil {
		t.Fatalf("after a hung batch: %v", err)
	}

	big := echoReq("big")
	big.Items[0].Payload = bytes.Repeat([]byte("x"), 6<<20)
	res, err := c.Parse(ctx, big)
	if err != nil || res[0].Err != nil || !strings.Contains(string(res[0].JSON), fmt.Sprintf(`"len":%d`, 6<<20)) {
		t.Fatalf("6 MiB item: %v %v", err, res)
	}

	_, err = c.Parse(ctx, echoReq("a", "crash", "b"))
	if !errors.Is(err, host.ErrPluginDown) {
		t.Fatalf("crash mid-batch: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the client does not see the crashed process as gone")
	}
	if _, err := c.Parse(ctx, echoReq("x")); !errors.Is(err, host.ErrPluginDown) {
		t.Errorf("after the crash: %v", err)
	}
}

// rawPlugin dispenses the gRPC connection itself, for the tests that talk
// to go-plugin's services directly.
type rawPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (rawPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return errors.New("host side") }
func (rawPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return conn, nil
}

// TestGoPluginServices talks to the services go-plugin's host relies on,
// through go-plugin itself: the health check of "plugin", the mutual TLS
// that refuses anyone without the daemon's certificate, and the
// controller's Shutdown that ends the process.
func TestGoPluginServices(t *testing.T) {
	cmd := scriptCmd(t, "tests/testplugin.py")
	pc, proto := goPluginClient(t, cmd)
	if err := proto.Ping(); err != nil { // grpc.health.v1 Check of "plugin"
		t.Fatalf("go-plugin's health check: %v", err)
	}
	raw, err := proto.Dispense(wire.PluginSetName)
	if err != nil {
		t.Fatal(err)
	}
	conn := raw.(*grpc.ClientConn)
	ctx := context.Background()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health watch: %v %v", r, err)
	}
	cancel()
	d, err := pluginv1.NewPluginClient(conn).Describe(ctx, &pluginv1.DescribeRequest{HostProtocolVersion: 1})
	if err != nil || d.GetName() != "pytest" {
		t.Fatalf("describe: %v %v", d, err)
	}

	// Only the daemon's certificate opens the socket (which is there).
	addr := pc.ReattachConfig().Addr.String()
	if nc, err := net.Dial("unix", addr); err != nil {
		t.Fatal(err)
	} else {
		nc.Close()
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"plaintext":          insecure.NewCredentials(),
		"TLS without a cert": credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}),
		"another cert":       credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{selfSigned(t)}}),
	} {
		cc, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = pluginv1.NewPluginClient(cc).Ping(cctx, &pluginv1.PingRequest{})
		cancel()
		cc.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: ping answered %v, want a refused connection", name, err)
		}
	}

	// go-plugin's controller: Shutdown ends the process, with status 0.
	if err := conn.Invoke(ctx, "/plugin.GRPCController/Shutdown", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !pc.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not exit after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := cmd.ProcessState; st == nil || st.ExitCode() != 0 {
		t.Errorf("after Shutdown: %v", st)
	}
	if _, err := os.Stat(filepath.Dir(addr)); !os.IsNotExist(err) {
		t.Errorf("the socket directory is left behind: %v", err)
	}
}

// goPluginClient starts cmd with go-plugin's own client (AutoMTLS), which
// dispenses the raw gRPC connection.
func goPluginClient(t testing.TB, cmd *exec.Cmd) (*plugin.Client, plugin.ClientProtocol) {
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{1: {wire.PluginSetName: rawPlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(pc.Kill)
	proto, err := pc.Client()
	if err != nil {
		t.Fatal(err)
	}
	return pc, proto
}

// TestSIGTERM: a plugin stopped with SIGTERM exits cleanly (status 0, its
// socket directory removed).
func TestSIGTERM(t *testing.T) {
	cmd := scriptCmd(t, "tests/testplugin.py")
	pc, proto := goPluginClient(t, cmd)
	if err := proto.Ping(); err != nil {
		t.Fatal(err)
	}
	sock := pc.ReattachConfig().Addr.String()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !pc.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not exit after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := cmd.ProcessState; st == nil || st.ExitCode() != 0 {
		t.Errorf("after SIGTERM: %v", st)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Errorf("the socket directory is left behind: %v", err)
	}
}

// selfSigned is a client certificate the plugin has never seen.
func selfSigned(t testing.TB) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestStartFailures: what a plugin author sees when the plugin cannot
// start, and what a person sees who runs it by hand.
func TestStartFailures(t *testing.T) {
	py := requirePython(t)
	env := []string{"PYTHONPATH=" + sdkDir(t), "PYTHONDONTWRITEBYTECODE=1"}
	for name, tc := range map[string]struct{ code, want string }{
		"print before serve": {
			"print('debug: starting'); import runpy; runpy.run_path('tests/testplugin.py', run_name='__main__')",
			`wrote to stdout before the handshake, first line "debug: starting"`,
		},
		"invalid plugin": {
			"from backend_plugin import *; serve(Plugin(name='Bad', analysers=[Analyser(name='a', type='t', node_prefix='p')]))",
			"invalid plugin: plugin name 'Bad': use lowercase letters, digits, '-' and '_'",
		},
		"no analyser": {
			"from backend_plugin import *; serve(Plugin(name='p'))",
			"invalid plugin: plugin p declares no analyser",
		},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(py, "-c", tc.code)
			cmd.Env = env
			_, err := host.Start(context.Background(), host.Config{Name: "p", Cmd: cmd, Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("start: %v\nwant %q", err, tc.want)
			}
		})
	}
	cmd := exec.Command(py, "tests/testplugin.py")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || strings.TrimSpace(string(out)) != "pytest is a plugin of the backend daemon: the daemon starts it, it is not meant to be run by hand (install it in a plugin directory)" {
		t.Errorf("run by hand: %v %q", err, out)
	}
}

// TestParentWatchdog: a plugin whose daemon is gone without closing it
// (no go-plugin, no parent-death signal) exits by itself.
func TestParentWatchdog(t *testing.T) {
	py := requirePython(t)
	handshake := filepath.Join(t.TempDir(), "handshake")
	// The parent shell starts the plugin, waits for its handshake and
	// exits: the plugin is re-parented.
	sh := exec.Command("bash", "-c", `"$0" "$1" >"$2" & echo $!; while [ ! -s "$2" ]; do sleep 0.02; done`,
		py, filepath.Join(sdkDir(t), "tests/testplugin.py"), handshake)
	sh.Env = []string{"PYTHONPATH=" + sdkDir(t), "PYTHONDONTWRITEBYTECODE=1", wire.CookieKey + "=" + wire.CookieValue, "PLUGIN_PROTOCOL_VERSIONS=1"}
	out, err := sh.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only if it still is our plugin (pids are reused).
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); alive(pid) && bytes.Contains(b, []byte("testplugin.py")) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	line, _ := os.ReadFile(handshake)
	if parts := strings.Split(strings.TrimSpace(string(line)), "|"); len(parts) != 6 || parts[0] != "1" || parts[1] != "1" || parts[2] != "unix" || parts[4] != "grpc" || parts[5] != "" {
		t.Errorf("handshake without AutoMTLS: %q", line)
	}
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the orphaned plugin is still running")
		}
		time.Sleep(20 * time.Millisecond)
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

// TestPackedExample packs the README's example into one executable file,
// as a user installs it, and runs it without the SDK on the Python path;
// packing twice gives the same bytes (a sha256 pin stays valid).
func TestPackedExample(t *testing.T) {
	py := requirePython(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "backend-plugin-hello")
	pack := func() []byte {
		cmd := exec.Command(filepath.Join(sdkDir(t), "backend-plugin-pack"), "examples/hello.py", "-o", out)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pack: %v %s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := pack()
	if !bytes.HasPrefix(first, []byte("#!"+py+"\n")) {
		t.Errorf("the packed plugin starts with %q", first[:min(40, len(first))])
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode: %v %v", fi.Mode(), err)
	}
	if second := pack(); !bytes.Equal(first, second) {
		t.Error("packing twice gave different files")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind in the output directory: %v", entries)
	}

	cmd := exec.Command(out)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no PYTHONPATH: the SDK is inside
	c, _ := start(t, cmd, host.Config{Name: "hello"})
	d, err := c.Describe(context.Background())
	if err != nil || d.Name != "hello" || len(d.Analysers) != 1 || d.Analysers[0].Parser != "hello" || !d.Analysers[0].ToSync {
		t.Fatalf("describe: %+v %v", d, err)
	}
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Parser: "hello", Items: []sdk.Item{
		{ID: "1", Payload: []byte(`<greeting xmlns="urn:example:hello" to="world">hello &amp; welcome</greeting>`)},
		{ID: "2", Payload: []byte(`<note xmlns="urn:other"/>`)},
		{ID: "3", Payload: []byte(`<greeting`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if string(res[0].JSON) != `{"to":"world","text":"hello & welcome"}` || res[0].SearchText != "hello & welcome" {
		t.Errorf("greeting: %s %q %v", res[0].JSON, res[0].SearchText, res[0].Err)
	}
	if res[1].Err == nil || res[1].Err.Error() != "not a greeting: {urn:other}note" {
		t.Errorf("not a greeting: %v", res[1].Err)
	}
	if res[2].Err == nil || !strings.Contains(res[2].Err.Error(), "unclosed token") {
		t.Errorf("bad XML: %v", res[2].Err)
	}
}

// TestGeneratedCodeIsCurrent regenerates the Python protocol code with
// genproto.sh into a temporary directory and compares it with the
// committed files (plugin.proto, go-plugin's protos of the go.mod version,
// health.proto).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is missing (apt-get install -y protobuf-compiler protobuf-compiler-grpc)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "genproto.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genproto.sh: %v\n%s", err, b)
	}
	const pkg = "backend_plugin/_proto"
	generated, err := filepath.Glob(filepath.Join(out, pkg, "*.py"))
	if err != nil || len(generated) != 8 {
		t.Fatalf("generated %v %v", generated, err)
	}
	committed, _ := filepath.Glob(filepath.Join(pkg, "*_pb2*.py"))
	if len(committed) != len(generated) {
		t.Errorf("committed %v, generated %v", committed, generated)
	}
	for _, g := range generated {
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(pkg, filepath.Base(g)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s is out of date: run plugin-sdk/python/genproto.sh (%v)", pkg, filepath.Base(g), err)
		}
	}
}

// TestPythonUnitTests runs the SDK's Python unit tests (tests/test_*.py).
func TestPythonUnitTests(t *testing.T) {
	py := requirePython(t)
	cmd := exec.Command(py, "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Env = []string{"PYTHONPATH=" + sdkDir(t), "PYTHONDONTWRITEBYTECODE=1", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("python unit tests: %v", err)
	}
	if !bytes.Contains(out, []byte("\nOK")) {
		t.Fatal("the unit tests did not say OK")
	}
}

// TestPyproject builds the wheel from pyproject.toml (setuptools, no
// network) in a copy of the SDK and checks what it holds.
func TestPyproject(t *testing.T) {
	py := requirePython(t)
	if err := exec.Command(py, "-c", "import setuptools, wheel").Run(); err != nil {
		msg := "python3-setuptools and python3-wheel are needed to build the wheel (apt-get install -y python3-setuptools python3-wheel)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.CopyFS(src, os.DirFS(sdkDir(t))); err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	cmd := exec.Command(py, "-c", "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))", dist)
	cmd.Dir = src
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build_wheel: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	wheel := lines[len(lines)-1]
	if wheel != "backend_plugin_sdk-0.1.0-py3-none-any.whl" {
		t.Fatalf("wheel %q", wheel)
	}
	list := exec.Command(py, "-c", `import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print("\n".join(z.namelist())); print([l for l in z.read("backend_plugin_sdk-0.1.0.dist-info/entry_points.txt").decode().splitlines() if "=" in l]); print([l for l in z.read("backend_plugin_sdk-0.1.0.dist-info/METADATA").decode().splitlines() if l.startswith("Requires-Dist")])`,
		filepath.Join(dist, wheel))
	b, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, b)
	}
	for _, want := range []string{"backend_plugin/__init__.py", "backend_plugin/pack.py", "backend_plugin/testing.py", "backend_plugin/_proto/plugin_pb2.py",
		"backend_plugin/_proto/plugin_pb2_grpc.py", "backend_plugin/_proto/health_pb2_grpc.py", "backend_plugin/_proto/grpc_stdio_pb2.py",
		"['backend-plugin-pack = backend_plugin.pack:main']", "['Requires-Dist: cryptography (>=38)', 'Requires-Dist: grpcio (>=1.51)', 'Requires-Dist: protobuf (>=4.21)']"} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("the wheel lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "tests/") || strings.Contains(string(b), "examples/") {
		t.Errorf("the wheel holds tests or examples:\n%s", b)
	}
}

// benchEntry is the Atom entry of the Go SDK's parse benchmark (host).
const benchEntry = `<entry xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title>A post number %d</title>` +
	`<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Some <b>rich</b> text with a <a href="https://example.org/">link</a>.</p></div></content>` +
	`<id>urn:uuid:%d</id><published>2024-05-01T10:00:00Z</published><updated>2024-05-01T10:00:00Z</updated>` +
	`<author><name>Romeo</name><uri>xmpp:romeo@montague.lit</uri></author><category term="go"/><category term="xmpp"/>` +
	`<link rel="replies" title="comments" href="xmpp:pubsub.montague.lit?;node=urn%%3Axmpp%%3Amicroblog%%3A0%%3Acomments%%2F%d"/></entry>`

func atomRequest(n int) sdk.ParseRequest {
	req := sdk.ParseRequest{Profile: "p", Node: "urn:test:pyatom", Analyser: "pytest-atom", Parser: "atom"}
	for i := range n {
		req.Items = append(req.Items, sdk.Item{ID: fmt.Sprint(i), Publisher: "romeo@montague.lit", Payload: fmt.Appendf(nil, benchEntry, i, i, i)})
	}
	return req
}

// packedTestPlugin packs tests/testplugin.py as a user installs a plugin.
func packedTestPlugin(tb testing.TB) string {
	requirePython(tb)
	out := filepath.Join(tb.TempDir(), "backend-plugin-pytest")
	cmd := exec.Command(filepath.Join(sdkDir(tb), "backend-plugin-pack"), "tests/testplugin.py", "-o", out)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("pack: %v %s", err, b)
	}
	return out
}

// BenchmarkPythonParse measures a Parse call from the Go host to the
// packed Python test plugin (AutoMTLS on), for batches of 1 and 100 Atom
// entries of about 640 bytes (the Go SDK's benchmark entries): through its
// Atom parser, and through its echo parser (next to no parsing: the
// protocol's own cost). The same Atom parser called in process in Python
// is tests/bench_inprocess.py; bench.sh runs both sides alternately and
// prints the ratio.
func BenchmarkPythonParse(b *testing.B) {
	c, _ := start(b, exec.Command(packedTestPlugin(b)), host.Config{Logger: slog.New(slog.DiscardHandler)})
	for _, parser := range []string{"atom", "echo"} {
		for _, n := range []int{1, 100} {
			req := atomRequest(n)
			req.Parser = parser
			b.Run(fmt.Sprintf("%s/batch=%d", parser, n), func(b *testing.B) {
				b.SetBytes(int64(n * len(req.Items[0].Payload)))
				for b.Loop() {
					res, err := c.Parse(context.Background(), req)
					if err != nil || res[0].Err != nil {
						b.Fatal(err, res[0].Err)
					}
				}
			})
		}
	}
}

// BenchmarkPythonStart measures starting the packed Python plugin until
// its first Describe answers (the daemon's start-up path), then kills it.
func BenchmarkPythonStart(b *testing.B) {
	path := packedTestPlugin(b)
	cfg := host.Config{Name: "pytest", Logger: slog.New(slog.DiscardHandler)}
	for b.Loop() {
		cfg.Cmd = exec.Command(path)
		c, err := host.Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Describe(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Kill()
		b.StartTimer()
	}
}

// TestReadmeExample: the Python example printed in plugin-sdk/README.md is
// examples/hello.py, the file the other tests run.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("examples/hello.py")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, append(append([]byte("```python\n"), example...), "```\n"...)) {
		t.Error("plugin-sdk/README.md does not show examples/hello.py as it is")
	}
}
