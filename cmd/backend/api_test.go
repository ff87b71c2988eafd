package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "example.org/backend/api/backendv1"
	_ "example.org/backend/api/backendv2"
)

// TestTCPListenerTLS: the TCP listener speaks TLS with a self-signed
// certificate kept in the data dir (0600) whose fingerprint `serve` logs
// and `status` shows; the CLI pins it or takes it as a CA file; a wrong pin,
// no pin, plain HTTP and a foreign browser Origin are refused; the token is
// still required.
func TestTCPListenerTLS(t *testing.T) {
	e := newEnv(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e.vars = append(e.vars, "BACKEND_API_TCP_ADDRESS="+addr)
	cfgFile := filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(cfgFile, []byte("[api]\nallowed_origins = [\"https://app.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, logs, _ := e.serve(t, "--config", cfgFile)
	out, _, code := e.cli(t, "status", "-o", "json")
	var st struct {
		TCPAddress     *string `json:"tcp_address"`
		TLSFingerprint *string `json:"tls_fingerprint"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.TLSFingerprint == nil || len(*st.TLSFingerprint) != 64 || st.TCPAddress == nil || *st.TCPAddress != addr {
		t.Fatalf("status: %d %s", code, out)
	}
	fp := *st.TLSFingerprint
	if !strings.Contains(logs.String(), fp) {
		t.Errorf("serve did not log the fingerprint %s:\n%s", fp, logs)
	}
	dataDir := filepath.Join(e.dir, "data", "backend")
	for _, f := range []string{"api-tls.crt", "api-tls.key", "api.token"} {
		if st, err := os.Stat(filepath.Join(dataDir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, err, st)
		}
	}
	token := filepath.Join(dataDir, "api.token")
	url := "https://" + addr
	if out, errs, code := e.cli(t, "--socket", url, "--token-file", token, "--tls-fingerprint", fp, "status", "-o", "json"); code != exitOK || !strings.Contains(out, fp) {
		t.Errorf("pinned: exit %d %s %s", code, out, errs)
	}
	// Colons and upper case are accepted.
	var colons []string
	for i := 0; i < len(fp); i += 2 {
		colons = append(colons, strings.ToUpper(fp[i:i+2]))
	}
	if _, errs, code := e.cli(t, "--socket", url, "--token-file", token, "--tls-fingerprint", "SHA256:"+strings.Join(colons, ":"), "status"); code != exitOK {
		t.Errorf("pinned with colons: exit %d %s", code, errs)
	}
	if _, errs, code := e.cli(t, "--socket", url, "--token-file", token, "--tls-ca-file", filepath.Join(dataDir, "api-tls.crt"), "status"); code != exitOK {
		t.Errorf("CA file: exit %d %s", code, errs)
	}
	if out, _, code := e.cli(t, "--socket", url, "--tls-fingerprint", fp, "status", "-o", "json"); code != exitFailed || !strings.Contains(out, `"unauthenticated"`) {
		t.Errorf("pinned without token: exit %d %q", code, out)
	}
	wrong := strings.Repeat("ab", 32)
	if out, errs, code := e.cli(t, "--socket", url, "--token-file", token, "--tls-fingerprint", wrong, "status"); code == exitOK || !strings.Contains(out+errs, "fingerprint") {
		t.Errorf("wrong pin: exit %d %s %s", code, out, errs)
	}
	if out, errs, code := e.cli(t, "--socket", url, "--token-file", token, "status"); code == exitOK || !strings.Contains(out+errs, "certificate") {
		t.Errorf("unpinned self-signed: exit %d %s %s", code, out, errs)
	}
	if out, errs, code := e.cli(t, "--socket", "http://"+addr, "--token-file", token, "status"); code == exitOK {
		t.Errorf("plain HTTP to the TLS port: exit %d %s %s", code, out, errs)
	}
	res, err := http.Get("http://" + addr + "/backend.v1.DaemonService/Status")
	if err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP answered %d %s", res.StatusCode, body)
		}
	}

	// Browsers: a foreign Origin is refused, a configured one gets CORS.
	raw, _ := os.ReadFile(token)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	post := func(origin string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/backend.v1.DaemonService/Status", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(raw)))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	if res, body := post("https://evil.example"); res.StatusCode != http.StatusForbidden || !strings.Contains(body, "api.allowed_origins") {
		t.Errorf("foreign origin: %d %s", res.StatusCode, body)
	}
	if res, body := post("https://app.example"); res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("allowed origin: %d %v %s", res.StatusCode, res.Header, body)
	}
}

// TestTCPPlaintextRules: plain HTTP on the TCP listener only where
// api.tcp_plaintext allows it; a non-loopback address without TLS refuses to
// start (before anything is bound or created).
func TestTCPPlaintextRules(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "BACKEND_API_TCP_ADDRESS=0.0.0.0:1", "BACKEND_API_TCP_PLAINTEXT=loopback")
	_, stderr, code := e.cli(t, "serve")
	if code != exitFailed || !strings.Contains(stderr, "not a loopback address") || !strings.Contains(stderr, "api.tcp_plaintext") {
		t.Errorf("non-loopback plain: exit %d %s", code, stderr)
	}
	e2 := newEnv(t)
	port := freePort(t)
	e2.vars = append(e2.vars, fmt.Sprintf("BACKEND_API_TCP_ADDRESS=127.0.0.1:%d", port), "BACKEND_API_TCP_PLAINTEXT=loopback")
	e2.serve(t)
	tokenFile := filepath.Join(e2.dir, "data", "backend", "api.token")
	waitFor(t, "the TCP listener", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if _, errs, code := e2.cli(t, "--socket", fmt.Sprintf("http://127.0.0.1:%d", port), "--token-file", tokenFile, "status"); code != exitOK {
		t.Errorf("loopback plain: exit %d %s", code, errs)
	}
}

// rss returns VmRSS and VmHWM of pid, in bytes.
func rss(t testing.TB, pid int) (cur, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				cur = n << 10
			} else {
				peak = n << 10
			}
		}
	}
	return cur, peak
}

// procedures lists every RPC of the API (both versions): path and whether
// the server streams.
func procedures(t *testing.T) (out []struct {
	path   string
	stream bool
}) {
	each := func(pkg protoreflect.FullName, f func(protoreflect.FileDescriptor) bool) {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, f)
	}
	for _, pkg := range []protoreflect.FullName{"backend.v1", "backend.v2"} {
		each(pkg, func(fd protoreflect.FileDescriptor) bool {
			for i := 0; i < fd.Services().Len(); i++ {
				sd := fd.Services().Get(i)
				for j := 0; j < sd.Methods().Len(); j++ {
					md := sd.Methods().Get(j)
					out = append(out, struct {
						path   string
						stream bool
					}{"/" + string(sd.FullName()) + "/" + string(md.Name()), md.IsStreamingServer()})
				}
			}
			return true
		})
	}
	if len(out) < 50 {
		t.Fatalf("only %d procedures found", len(out))
	}
	return out
}

// TestRequestBounds posts a compression bomb (1 GiB of zeros, about 1 MiB
// gzipped) and an oversize plain body (300 MiB, sent lazily) to every
// procedure of every service, over the Connect protocol (unary and
// streaming forms): each is refused with resource_exhausted naming the
// limit, and the daemon's resident memory grows by at most 64 MiB above
// idle (VmHWM, reset after the idle reading, from /proc). Enveloped
// (streaming, gRPC) requests are read and inflated in front of Connect
// like unary ones, into one bounded buffer shared by every route: no
// route's own read buffers grow with a hostile request.
func TestRequestBounds(t *testing.T) {
	e := newEnv(t)
	cmd, _, _, _ := e.serve(t)
	pid := cmd.Process.Pid
	hc := unixHTTP(e.socket)

	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for i := 0; i < 1024; i++ {
		zw.Write(zero)
	}
	zw.Close()
	envelope := func(flags byte, payload []byte, size uint32) []byte {
		b := make([]byte, 5, 5+len(payload))
		b[0] = flags
		binary.BigEndian.PutUint32(b[1:], size)
		return append(b, payload...)
	}
	procs := procedures(t)
	send := func(path string, stream bool, body io.Reader, length int64, gz bool) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://backend"+path, body)
		req.ContentLength = length
		if stream {
			req.Header.Set("Content-Type", "application/connect+proto")
			if gz {
				req.Header.Set("Connect-Content-Encoding", "gzip")
			}
		} else {
			req.Header.Set("Content-Type", "application/proto")
			if gz {
				req.Header.Set("Content-Encoding", "gzip")
			}
		}
		req.Header.Set("Connect-Protocol-Version", "1")
		req.Header.Set("Connect-Accept-Encoding", "identity")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := hc.Do(req.WithContext(ctx))
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if stream && len(b) > 5 && b[0]&1 != 0 { // a compressed end-of-stream message
			if zr, err := gzip.NewReader(bytes.NewReader(b[5:])); err == nil {
				if plain, err := io.ReadAll(io.LimitReader(zr, 1<<20)); err == nil {
					b = plain
				}
			}
		}
		return res.StatusCode, string(b)
	}
	// Warm up every route once, then read the idle figure.
	for _, p := range procs {
		if p.stream {
			continue
		}
		send(p.path, false, bytes.NewReader(nil), 0, false)
	}
	time.Sleep(500 * time.Millisecond)
	idle, _ := rss(t, pid)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS: %v", err)
	}
	refused := func(what, path string, status int, body string) {
		t.Helper()
		if !strings.Contains(body, "resource_exhausted") && !strings.Contains(body, "429") && status != http.StatusTooManyRequests {
			t.Errorf("%s to %s: %d %.300s", what, path, status, body)
			return
		}
		if !strings.Contains(body, strconv.Itoa(4<<20)) {
			t.Errorf("%s to %s: the refusal does not name the limit: %.300s", what, path, body)
		}
	}
	const oversize = 300 << 20
	for _, p := range procs {
		if p.stream {
			st, body := send(p.path, true, bytes.NewReader(envelope(1, bomb.Bytes(), uint32(bomb.Len()))), -1, true)
			refused("bomb", p.path, st, body)
			st, body = send(p.path, true, io.MultiReader(bytes.NewReader(envelope(0, nil, oversize)), io.LimitReader(zeros{}, oversize)), -1, false)
			refused("oversize", p.path, st, body)
			continue
		}
		st, body := send(p.path, false, bytes.NewReader(bomb.Bytes()), int64(bomb.Len()), true)
		refused("bomb", p.path, st, body)
		if c, pk := rss(t, pid); os.Getenv("W19DEBUG") != "" {
			t.Logf("after bomb %s: rss %.1f peak %.1f", p.path, float64(c)/(1<<20), float64(pk)/(1<<20))
		}
		st, body = send(p.path, false, io.LimitReader(zeros{}, oversize), oversize, false)
		refused("oversize", p.path, st, body)
		st, body = send(p.path, false, io.LimitReader(zeros{}, oversize), -1, false) // chunked: no length to refuse early
		refused("oversize chunked", p.path, st, body)
	}
	_, peak := rss(t, pid)
	growth := peak - idle
	t.Logf("%d procedures; bomb %d bytes gzipped (1 GiB inflated); idle RSS %.1f MiB, peak %.1f MiB, growth %.1f MiB",
		len(procs), bomb.Len(), float64(idle)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20))
	if growth > 64<<20 {
		t.Errorf("RSS grew by %.1f MiB above idle (limit 64 MiB)", float64(growth)/(1<<20))
	}
	if _, _, code := e.cli(t, "status"); code != exitOK {
		t.Error("daemon stopped answering")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSecondDaemonTouchesNothing: a second `serve` on a busy socket with
// another data dir is refused before it creates that directory, a database,
// a secret key or starts a plugin.
func TestSecondDaemonTouchesNothing(t *testing.T) {
	e := newEnv(t)
	e.serve(t)
	other := filepath.Join(e.dir, "other")
	second := exec.Command(os.Args[0], "serve", "--data-dir", other)
	second.Env = append(append([]string{}, e.vars...), "BACKEND_TEST_MAIN=1")
	msg, _ := second.CombinedOutput()
	if second.ProcessState.ExitCode() != exitFailed || !strings.Contains(string(msg), "another daemon is already running") {
		t.Fatalf("second daemon: exit %d, %s", second.ProcessState.ExitCode(), msg)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("the refused daemon created %s (%v)", other, err)
	}
	if strings.Contains(string(msg), "plugin running") || strings.Contains(string(msg), "database migrated") {
		t.Errorf("the refused daemon did work before refusing:\n%s", msg)
	}
}

// TestDataDirTightened: an existing data dir with mode 0755 is made 0700
// at start.
func TestDataDirTightened(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "data", "backend")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	_, _, logs, _ := e.serve(t)
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode after start: %v %v", st.Mode().Perm(), err)
	}
	if !strings.Contains(logs.String(), "tightened") {
		t.Errorf("no log line about the tightened data dir:\n%s", logs)
	}
}

// TestPluginsListShowsRefused: a group-writable plugin file in the plugin
// directory is not run and `plugins list` shows it refused, with path and
// reason.
func TestPluginsListShowsRefused(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "data", "backend", "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "backend-plugin-shared")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o775)
	e.serve(t)
	out, _, code := e.cli(t, "plugins", "list", "-o", "json")
	if code != exitOK || !strings.Contains(out, `"name":"shared"`) || !strings.Contains(out, `"state":"refused"`) ||
		!strings.Contains(out, "writable by group or others") || !strings.Contains(out, p) {
		t.Errorf("plugins list: %d %s", code, out)
	}
}
