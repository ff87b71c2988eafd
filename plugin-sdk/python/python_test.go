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
