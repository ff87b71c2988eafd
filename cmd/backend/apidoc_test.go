package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docExample is one ```sh block of docs/api.md and the ```json block that
// follows it (what it prints), if any.
type docExample struct {
	line   int
	code   string
	output string
}

// apiDocExamples splits docs/api.md: the block after <!-- setup --> (the
// variables, which the test sets itself), the block after <!-- functions
// --> (a prelude of every example), and the examples.
func apiDocExamples(t *testing.T) (prelude string, examples []docExample) {
	raw, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	marker := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "<!-- ") {
			marker = strings.TrimSuffix(strings.TrimPrefix(l, "<!-- "), " -->")
			continue
		}
		if l != "```sh" && l != "```json" {
			if strings.TrimSpace(l) != "" {
				marker = ""
			}
			continue
		}
		kind, start := l, i+1
		for i++; i < len(lines) && lines[i] != "```"; i++ {
		}
		body := strings.Join(lines[start:i], "\n") + "\n"
		switch {
		case kind == "```json":
			if n := len(examples); n > 0 && examples[n-1].output == "" {
				examples[n-1].output = body
			}
		case marker == "setup":
		case marker == "functions":
			prelude += body
		default:
			examples = append(examples, docExample{line: start, code: body})
		}
		marker = ""
	}
	return prelude, examples
}

var jsonKey = regexp.MustCompile(`"([A-Za-z_]+)":`)

// TestAPIDocExamples runs every curl example of docs/api.md, in order, in
// bash, against a daemon with a profile connected to Prosody and a TLS TCP
// listener: each must exit 0, and print every JSON key of the output the
// doc shows after it.
func TestAPIDocExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is missing (apt-get install -y curl)")
		}
		t.Skip("curl is missing")
	}
	prelude, examples := apiDocExamples(t)
	if len(examples) < 8 || !strings.Contains(prelude, "connect_unframe") {
		t.Fatalf("docs/api.md: %d examples, prelude %q", len(examples), prelude)
	}
	port := freePort(t)
	srv := startXMPP(t, "prosody", nil)
	e := pubsubEnv(t, srv, fmt.Sprintf("BACKEND_API_TCP_ADDRESS=127.0.0.1:%d", port))
	data := filepath.Join(e.dir, "data", "backend")
	work := t.TempDir()
	for _, ex := range examples {
		cmd := exec.Command("bash", "-c", "set -u\n"+prelude+ex.code)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "SOCK="+e.socket, "DATA="+data, fmt.Sprintf("TCP=127.0.0.1:%d", port), "PROFILE=alice")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("docs/api.md:%d: %v\n%s\n%s", ex.line, err, ex.code, out)
			continue
		}
		for _, m := range jsonKey.FindAllStringSubmatch(ex.output, -1) {
			if !strings.Contains(string(out), `"`+m[1]+`":`) {
				t.Errorf("docs/api.md:%d: the output lacks %q (the doc shows %s):\n%s", ex.line, m[1], strings.TrimSpace(ex.output), out)
				break
			}
		}
		t.Logf("docs/api.md:%d:\n%s", ex.line, out)
	}
}
