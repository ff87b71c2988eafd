package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// repoRoot is the repository's top directory (this package is two levels
// below it).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "run.sh")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

// walkthrough returns the commands of README.md's walkthrough block, one
// per logical line (a line ending with | or \ continues on the next).
func walkthrough(t *testing.T, readme string) []string {
	t.Helper()
	m := regexp.MustCompile("(?s)<!-- walkthrough -->\\s*```sh\\n(.*?)```\\s*<!-- /walkthrough -->").FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no <!-- walkthrough --> sh block")
	}
	var cmds []string
	cur := ""
	for _, line := range strings.Split(m[1], "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		cur += line + "\n"
		trimmed := strings.TrimSpace(line)
		if strings.HasSuffix(trimmed, "|") || strings.HasSuffix(trimmed, "\\") {
			continue
		}
		cmds = append(cmds, cur)
		cur = ""
	}
	return cmds
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestQuickStartAndWalkthrough runs README's first command (scripts/run.sh,
// with its ports and directories overridden), then every command of the
// README's walkthrough against the daemon it started, then stops it with
// Ctrl-C: the README cannot rot.
func TestQuickStartAndWalkthrough(t *testing.T) {
	testsvc.Uses(t, testsvc.KindProsody)
	if _, err := exec.LookPath("prosody"); err != nil {
		testsvc.RequireXMPP(t, fmt.Errorf("prosody: %w", testsvc.ErrNotInstalled))
	}
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := walkthrough(t, string(readme))
	if len(cmds) < 6 {
		t.Fatalf("walkthrough has %d commands, want at least 6:\n%s", len(cmds), strings.Join(cmds, ""))
	}
	dir, err := os.MkdirTemp("/tmp", "qs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "backend.sock")
	env := append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "xdg"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		"XDG_RUNTIME_DIR="+dir, "BACKEND_SOCKET="+socket)

	run := exec.Command("bash", "scripts/run.sh", "--data-dir", filepath.Join(dir, "data"), "--socket", socket,
		"--xmpp-port", fmt.Sprint(freePort(t)), "--log", filepath.Join(dir, "daemon.log"))
	run.Dir, run.Env = root, env
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), `README.md ("Walkthrough")`) {
				close(ready)
			}
		}
		exited <- run.Wait()
	}()
	t.Cleanup(func() { run.Process.Kill() })
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("scripts/run.sh ended before it was ready (%v):\n%s\n%s", err, stderr.String(), out.String())
	case <-time.After(10 * time.Minute):
		t.Fatalf("scripts/run.sh not ready after 10 min:\n%s", stderr.String())
	}
	if !strings.Contains(out.String(), "cache search -p demo") {
		t.Errorf("run.sh does not print what to type next:\n%s", out.String())
	}

	// What each walkthrough command must show (notifications and parsing
	// are asynchronous: a check is retried for a while).
	expect := []struct{ cmd, want string }{
		{"pubsub items", `"from_cache":true`},
		{"tags overlap", `"id":"first-post"`},
		{"-f walkthrough", "first-post"},
		{"cache status", "complete"},
	}
	for _, c := range cmds {
		want := ""
		for _, e := range expect {
			if strings.Contains(c, e.cmd) {
				want = e.want
			}
		}
		streams := strings.Contains(c, "Ctrl-C to stop")
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if streams {
				ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
			}
			sh := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", c)
			sh.Dir, sh.Env = root, env
			got, err := sh.CombinedOutput()
			cancel()
			ok := err == nil && strings.Contains(string(got), want)
			if streams {
				// Ends by the timeout (Ctrl-C), having connected.
				ok = ctx.Err() != nil && !strings.Contains(string(got), "error")
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("walkthrough command failed (%v), want %q in its output:\n%s\noutput:\n%s", err, want, c, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Ctrl-C stops the daemon and the private Prosody; exit 0.
	if err := run.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("scripts/run.sh after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("scripts/run.sh did not stop after Ctrl-C")
	}
	if _, err := os.Stat(socket); err == nil {
		t.Error("the daemon's socket is still there after Ctrl-C")
	}
}
