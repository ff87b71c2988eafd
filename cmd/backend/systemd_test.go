package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs `serve` as systemd would with Type=notify and a
// watchdog: a fake notification socket receives READY=1 once the API
// answers, WATCHDOG=1 pings, and STOPPING=1 on SIGTERM; plugin processes do
// not inherit the socket.
func TestSystemdNotify(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	cmd := exec.Command(os.Args[0], "serve")
	// 1 s watchdog: a ping every 500 ms.
	cmd.Env = append(append([]string{"BACKEND_LOG_FORMAT=json"}, e.vars...), "BACKEND_TEST_MAIN=1", "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=1000000")
	logs := &logBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		checkJSONLog(t, logs.String())
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notification socket closed while waiting for %s", what)
			}
			return m
		case <-exited:
			t.Fatalf("daemon exited while waiting for %s: %v\n%s", what, cmd.ProcessState, logs)
		case <-time.After(2 * time.Minute):
			t.Fatalf("no %s; log:\n%s", what, logs)
		}
		return ""
	}
	ready := next("READY=1")
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, "MAINPID="+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("first notification = %q", ready)
	}
	// READY=1 means the API serves: a client gets an answer at once.
	if out, errs, code := e.cli(t, "status", "-o", "json"); code != exitOK {
		t.Fatalf("status right after READY=1: %d %s %s", code, out, errs)
	}
	for range 2 {
		if m := next("WATCHDOG=1"); m != "WATCHDOG=1" {
			t.Errorf("notification = %q, want WATCHDOG=1", m)
		}
	}
	// The plugin processes do not see the notification socket.
	waitFor(t, "microblog running", func() bool { return microblogRunning(t, e) })
	for _, p := range e.plugins(t).Plugins {
		if p.PID == nil {
			continue
		}
		environ, err := os.ReadFile("/proc/" + strconv.FormatInt(*p.PID, 10) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(environ, []byte("NOTIFY_SOCKET=")) || bytes.Contains(environ, []byte("WATCHDOG_USEC=")) {
			t.Errorf("plugin %s inherited the notification socket", p.Name)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		m := next("STOPPING=1")
		if m == "WATCHDOG=1" {
			continue
		}
		if !strings.HasPrefix(m, "STOPPING=1") {
			t.Errorf("notification after SIGTERM = %q", m)
		}
		break
	}
	<-exited
	if !cmd.ProcessState.Success() {
		t.Errorf("exit after SIGTERM: %v", cmd.ProcessState)
	}
}

// TestSystemdUnitVerifies installs contrib/systemd/backend.service and the
// binary where its ExecStart says inside a temporary root, with the man
// page its Documentation= names, and runs systemd-analyze verify on it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (apt-get install -y systemd)")
		}
		t.Skip("systemd-analyze is missing (apt-get install -y systemd)")
	}
	unit, err := os.ReadFile("../../contrib/systemd/backend.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecStart=/usr/local/bin/backend serve --config /etc/backend/config.toml",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=backend", "RuntimeDirectory=backend", "Documentation=man:backend-serve(1)"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	root := t.TempDir()
	units := filepath.Join(root, "usr/lib/systemd/system")
	for _, d := range []string{"usr/local/bin", "etc/systemd/system", "usr/share/man/man1", "usr/lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The targets the unit depends on, from the host (regular files only:
	// the aliases are symlinks into the host's tree).
	for _, dir := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		ms, _ := filepath.Glob(filepath.Join(dir, "*.target"))
		for _, m := range ms {
			if st, err := os.Lstat(m); err != nil || !st.Mode().IsRegular() {
				continue
			}
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(units, filepath.Base(m)), b, 0o644)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/backend"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/backend.service")
	if err := os.WriteFile(unitPath, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	// The man pages come from `backend man`.
	e := newEnv(t)
	if out, errs, code := e.cli(t, "man", filepath.Join(root, "usr/share/man/man1")); code != exitOK {
		t.Fatalf("backend man: %d %s %s", code, out, errs)
	}
	args := []string{"verify", "--root=" + root, unitPath}
	if _, err := exec.LookPath("man"); err != nil {
		args = append([]string{"verify", "--man=no"}, args[1:]...)
		t.Log("man is not installed: Documentation= not checked")
	}
	cmd := exec.Command(analyze, args...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// The check can fail: without the binary, verify refuses the unit.
	os.Remove(filepath.Join(root, "usr/local/bin/backend"))
	if out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, args[len(args)-2:]...)...).CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify accepted the unit without its binary:\n%s", out)
	}
}
