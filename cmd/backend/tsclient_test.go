package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tsDir is the TypeScript client.
var tsDir, _ = filepath.Abs("../../clients/ts")

// needTS installs the TypeScript client's dependencies (clients/ts/install.sh:
// npm ci into a cache outside the repository) and returns the node binary.
// Without node or npm the test fails under CI=true and is skipped otherwise.
func needTS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = exec.LookPath("npm")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node/npm missing (scripts/test.sh installs them: apt-get install -y nodejs npm): %v", err)
		}
		t.Skipf("node/npm missing (apt-get install -y nodejs npm): %v", err)
	}
	if out, err := exec.Command("bash", filepath.Join(tsDir, "install.sh")).CombinedOutput(); err != nil {
		t.Fatalf("clients/ts/install.sh: %v\n%s", err, out)
	}
	return node
}

// TestTSClientGeneratedIsCurrent: clients/ts/src/gen is what protoc-gen-es
// (the version of the lockfile) makes of proto/backend/v2.
func TestTSClientGeneratedIsCurrent(t *testing.T) {
	needTS(t)
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc is missing (apt-get install -y protobuf-compiler)")
	}
	out := t.TempDir()
	if b, err := exec.Command("bash", filepath.Join(tsDir, "genproto.sh"), out).CombinedOutput(); err != nil {
		t.Fatalf("genproto: %v\n%s", err, b)
	}
	gen := filepath.Join(tsDir, "src", "gen")
	seen := 0
	filepath.Walk(out, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(gen, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("clients/ts/src/gen/%s differs from what proto/ generates (run clients/ts/genproto.sh)", rel)
		}
		seen++
		return nil
	})
	committed, _ := filepath.Glob(filepath.Join(gen, "backend", "v2", "*.ts"))
	if seen == 0 || len(committed) != seen {
		t.Errorf("generated %d files, %d committed", seen, len(committed))
	}
}

// wireLog records the bodies that cross a proxy, per path.
type wireLog struct {
	mu     sync.Mutex
	req    map[string]*bytes.Buffer
	res    map[string]*bytes.Buffer
	ctypes map[string]string
}

func (w *wireLog) buf(m map[string]*bytes.Buffer, path string) *bytes.Buffer {
	if m[path] == nil {
		m[path] = &bytes.Buffer{}
	}
	return m[path]
}

func (w *wireLog) get(m map[string]*bytes.Buffer, path string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m[path] == nil {
		return ""
	}
	return m[path].String()
}

type teeBody struct {
	r    interface{ Read([]byte) (int, error) }
	c    func() error
	log  *wireLog
	path string
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.log.mu.Lock()
	b.log.buf(b.log.req, b.path).Write(p[:n])
	b.log.mu.Unlock()
	return n, err
}

func (b *teeBody) Close() error { return b.c() }

type teeWriter struct {
	http.ResponseWriter
	log  *wireLog
	path string
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.log.mu.Lock()
	w.log.buf(w.log.res, w.path).Write(p)
	w.log.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recordingProxy serves on a Unix socket of its own and forwards to the
// daemon's socket, recording every request and response body (streams are
// flushed through as they come).
func recordingProxy(t *testing.T, daemon string) (string, *wireLog) {
	t.Helper()
	sock := filepath.Join(filepath.Dir(daemon), "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := &wireLog{req: map[string]*bytes.Buffer{}, res: map[string]*bytes.Buffer{}, ctypes: map[string]string{}}
	target, _ := url.Parse("http://backend")
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = unixHTTP(daemon).Transport
	rp.FlushInterval = -1
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		log.mu.Lock()
		log.ctypes[path] = r.Header.Get("Content-Type")
		log.mu.Unlock()
		r.Body = &teeBody{r: r.Body, c: r.Body.Close, log: log, path: path}
		rp.ServeHTTP(&teeWriter{ResponseWriter: w, log: log, path: path}, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock, log
}

// tsEvent is one EVENT line of the example.
type tsEvent struct {
	Case     string          `json:"case"`
	TypeName string          `json:"typeName"`
	Profile  string          `json:"profile"`
	Summary  string          `json:"summary"`
	JSON     json.RawMessage `json:"json"`
}

// TestTSClientExample runs the TypeScript example frontend (compiled with
// tsc, run with this machine's node) against a daemon and Prosody, through
// a proxy that records the wire: every kind of event it triggers arrives
// decoded as its typed message, the node is read from the cache and
// searched, and the JSON on the wire carries XML as text, never base64.
func TestTSClientExample(t *testing.T) {
	node := needTS(t)
	if out, err := exec.Command(filepath.Join(tsDir, "node_modules", ".bin", "tsc"), "-p", tsDir).CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	version, _ := exec.Command(node, "--version").Output()
	t.Logf("node %s", bytes.TrimSpace(version))
	srv := startXMPP(t, "prosody", nil)
	e := pubsubEnvAs(t, srv, "dave", "dave-pw")
	proxy, wire := recordingProxy(t, e.socket)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(tsDir, "dist", "example.js"), "alice")
	cmd.Env = append(os.Environ(), "BACKEND_SOCKET="+proxy)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	seen := map[string]tsEvent{}
	steps := map[string]string{}
	done := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "EVENT "):
			var ev tsEvent
			if err := json.Unmarshal([]byte(line[len("EVENT "):]), &ev); err != nil {
				t.Fatalf("event line %q: %v", line, err)
			}
			if _, ok := seen[ev.Case]; !ok {
				seen[ev.Case] = ev
			}
		case strings.HasPrefix(line, "STEP "):
			name, data, _ := strings.Cut(line[len("STEP "):], " ")
			steps[name] = data
		case line == "DONE":
			done = true
		}
	}
	if !done {
		t.Fatalf("example did not finish:\n%s", out)
	}
	// Every kind the example triggers (Prosody sends no configuration or
	// subscription notifications for these; TestRouteSynthetic has them).
	want := map[string]string{
		"started": "StreamStarted", "items": "PubSubItemsEvent", "retract": "PubSubRetractEvent", "purge": "PubSubPurgeEvent",
		"delete": "PubSubDeleteEvent", "sessionState": "SessionStateEvent", "cacheSync": "PubSubCacheSyncProgress",
		"paramChanged": "ParamChangedEvent", "pluginState": "PluginStateEvent", "profileCreated": "ProfileCreatedEvent",
		"profileDeleted": "ProfileDeletedEvent",
	}
	for c, typ := range want {
		ev, ok := seen[c]
		if !ok {
			t.Errorf("no %s event received", c)
			continue
		}
		if ev.TypeName != "backend.v2."+typ {
			t.Errorf("%s event decoded as %q, want backend.v2.%s", c, ev.TypeName, typ)
		}
	}
	if s := seen["items"].Summary; !strings.Contains(s, "<item id='ts-1'") || !strings.Contains(s, "<title>Post ts-1 from TypeScript</title>") {
		t.Errorf("items event summary = %s", s)
	}
	t.Logf("an event line: %s", seen["items"].JSON)
	for _, st := range []struct{ name, want string }{
		{"profiles", `"name":"alice"`},
		{"cache_get", `"fromCache":true`},
		{"items", `"fromCache":true`},
		{"search", `"title":"Post ts-2 from TypeScript"`},
		{"synced", `"state":"complete"`},
	} {
		if !strings.Contains(steps[st.name], st.want) {
			t.Errorf("step %s = %s, want %s in it", st.name, steps[st.name], st.want)
		}
	}
	// The wire: JSON, XML as text.
	publish := "/backend.v2.PubSubService/Publish"
	if ct := wire.ctypes[publish]; ct != "application/json" {
		t.Errorf("publish content type %q: want JSON", ct)
	}
	body := wire.get(wire.req, publish)
	if !strings.Contains(body, `"payload":"<entry xmlns='http://www.w3.org/2005/Atom'><title>Post ts-1`) {
		t.Errorf("publish request on the wire: %s", body)
	}
	events, err := unframe(wire.get(wire.res, "/backend.v2.DaemonService/Events"))
	if err != nil {
		t.Fatalf("event stream on the wire: %v", err)
	}
	if !strings.Contains(events, `"xml":"<item id='ts-1'`) {
		t.Errorf("event stream on the wire lacks the XML text of ts-1: %.2000s", events)
	}
	for _, b64 := range []string{"PGVudHJ5", "PGl0ZW0g"} { // base64 of "<entry", "<item "
		if strings.Contains(body+events, b64) {
			t.Errorf("base64 on the wire (%s)", b64)
		}
	}
	t.Logf("publish on the wire: %s", body)
}

// unframe returns the messages of a Connect stream (envelopes: a flags
// byte, a 4-byte length, the message, gzip-compressed when flags has bit
// 1), one per line.
func unframe(raw string) (string, error) {
	b := []byte(raw)
	var out strings.Builder
	for len(b) > 0 {
		if len(b) < 5 {
			return "", fmt.Errorf("truncated envelope")
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			return "", fmt.Errorf("truncated message")
		}
		msg := b[5 : 5+n]
		if b[0]&1 != 0 {
			zr, err := gzip.NewReader(bytes.NewReader(msg))
			if err != nil {
				return "", err
			}
			if msg, err = io.ReadAll(zr); err != nil {
				return "", err
			}
		}
		out.Write(msg)
		out.WriteByte('\n')
		b = b[5+n:]
	}
	return out.String(), nil
}
