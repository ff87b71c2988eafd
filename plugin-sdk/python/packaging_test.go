// Tests of the packaged SDK: the packed example, the generated code, the
// Python unit tests, pyproject, the README example and the benchmarks.

package python_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
)

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
