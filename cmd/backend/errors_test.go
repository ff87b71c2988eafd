package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.org/backend/internal/testsvc"
)

// The error paths a newcomer hits first: each must be one line that names
// the next step, with the exit codes and JSON shape of DESIGN §9.

// oneLine fails unless msg (without its final newline) is a single line.
func oneLine(t *testing.T, what, msg string) string {
	t.Helper()
	msg = strings.TrimSuffix(msg, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("%s: want one line, got %q", what, msg)
	}
	t.Logf("%s: %s", what, msg)
	return msg
}

// wantAll fails unless msg contains every one of parts.
func wantAll(t *testing.T, what, msg string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("%s: %q does not contain %q", what, msg, p)
		}
	}
}

// jsonError decodes the §9 error object of -o json.
func jsonError(t *testing.T, what, out string) (code, message string) {
	t.Helper()
	var v struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Error == nil {
		t.Fatalf("%s: not a JSON error object: %q (%v)", what, out, err)
	}
	return v.Error.Code, v.Error.Message
}

func TestErrorDaemonNotRunning(t *testing.T) {
	e := newEnv(t)
	_, stderr, code := e.cli(t, "profile", "connect", "alice")
	if code != exitUnreachable {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitUnreachable, stderr)
	}
	msg := oneLine(t, "daemon not running", stderr)
	wantAll(t, "daemon not running", msg, e.socket, "backend serve")
}

func TestErrorConnectWrongPassword(t *testing.T) {
	srv := servers.Use(t, testsvc.KindProsody)
	e := newEnv(t)
	e.vars = append(e.vars, "WRONG_PW=not-alice-pw")
	e.serve(t)
	if out, errs, code := e.cli(t, "profile", "create", "alice", "--jid", "alice@"+srv.Domain, "--password-env", "WRONG_PW",
		"--host", srv.Host, "--port", strconv.Itoa(srv.Port), "--ca-file", srv.CAFile); code != exitOK {
		t.Fatalf("profile create: %d %s %s", code, out, errs)
	}
	_, stderr, code := e.cli(t, "profile", "connect", "alice")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d (stderr %q)", code, exitFailed, stderr)
	}
	msg := oneLine(t, "wrong password", stderr)
	wantAll(t, "wrong password", msg, "refused the credentials", "not-authorized", "backend profile set alice connection.password -")
	rec := e.logs.waitRecord(t, "the refused login", func(r map[string]any) bool { return r["msg"] == "xmpp: connection failed" })
	if err, _ := rec["err"].(string); rec["level"] != "WARN" || rec["profile"] != "alice" || !strings.Contains(err, "not-authorized") {
		t.Errorf("log record of the refused login: %v", rec)
	}

	out, _, code := e.cli(t, "profile", "connect", "alice", "-o", "json")
	jcode, jmsg := jsonError(t, "wrong password", out)
	if code != exitFailed || jcode != "failed_precondition" {
		t.Errorf("json: exit %d, code %q, want %d and failed_precondition", code, jcode, exitFailed)
	}
	wantAll(t, "wrong password (json)", oneLine(t, "wrong password (json)", jmsg), "backend profile set alice connection.password -")

	// The fix the message names works.
	if _, errs, code := e.cliIn(t, "alice-pw\n", "profile", "set", "alice", "connection.password", "-"); code != exitOK {
		t.Fatalf("profile set password: %d %s", code, errs)
	}
	if out, errs, code := e.cli(t, "profile", "connect", "alice"); code != exitOK {
		t.Fatalf("connect after the fix: %d %s %s", code, out, errs)
	}
}

func TestErrorConnectServerUnreachable(t *testing.T) {
	port := freePort(t) // closed: nothing listens there
	e := newEnv(t)
	e.vars = append(e.vars, "ALICE_PW=alice-pw")
	e.serve(t)
	if out, errs, code := e.cli(t, "profile", "create", "alice", "--jid", "alice@localhost", "--password-env", "ALICE_PW",
		"--host", "127.0.0.1", "--port", strconv.Itoa(port)); code != exitOK {
		t.Fatalf("profile create: %d %s %s", code, out, errs)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	_, stderr, code := e.cli(t, "profile", "connect", "alice")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d: the daemon answered, the XMPP server did not (stderr %q)", code, exitFailed, stderr)
	}
	msg := oneLine(t, "server unreachable", stderr)
	wantAll(t, "server unreachable", msg, addr, "connection.host", "connection.port", "backend profile params alice")
	// The daemon's log says it too, at warn level, with the cause.
	rec := e.logs.waitRecord(t, "the failed connection", func(r map[string]any) bool { return r["msg"] == "xmpp: connection failed" })
	if err, _ := rec["err"].(string); rec["level"] != "WARN" || rec["profile"] != "alice" || rec["addr"] != addr || !strings.Contains(err, "connection refused") {
		t.Errorf("log record of the failed connection: %v", rec)
	}

	out, _, code := e.cli(t, "profile", "connect", "alice", "-o", "json")
	jcode, jmsg := jsonError(t, "server unreachable", out)
	if code != exitFailed || jcode != "unavailable" {
		t.Errorf("json: exit %d, code %q, want %d and unavailable", code, jcode, exitFailed)
	}
	wantAll(t, "server unreachable (json)", oneLine(t, "server unreachable (json)", jmsg), addr, "backend profile params alice")
}

// serveFails runs `backend serve` as a process that must fail at start-up
// and returns its "backend: " error line.
func (e *env) serveFails(t *testing.T, vars ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve")
	cmd.WaitDelay = 5 * time.Second // a leftover child must not hold the output open
	cmd.Env = append(append(append([]string{}, e.vars...), vars...), "BACKEND_TEST_MAIN=1")
	out, _ := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("serve did not fail: it was still running after a minute; output:\n%s", out)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitFailed {
		t.Fatalf("serve: exit %d, want %d; output:\n%s", code, exitFailed, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "backend: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("serve: want one error line, got %q; output:\n%s", lines, out)
	}
	t.Logf("serve: %s", lines[0])
	return lines[0]
}

func TestErrorServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	e := newEnv(t)
	msg := e.serveFails(t, "BACKEND_API_TCP_ADDRESS="+addr)
	wantAll(t, "api.tcp_address in use", msg, addr, "already in use", "api.tcp_address", "BACKEND_API_TCP_ADDRESS")

	msg = e.serveFails(t, "BACKEND_METRICS_ADDRESS="+addr)
	wantAll(t, "metrics.address in use", msg, addr, "already in use", "metrics.address", "BACKEND_METRICS_ADDRESS")

	// Nothing was left behind: the same environment serves once freed.
	if _, err := os.Stat(e.socket); !os.IsNotExist(err) {
		t.Errorf("socket left after a failed start: %v", err)
	}
}

func TestErrorServeSocketInUse(t *testing.T) {
	e := newEnv(t)
	e.serve(t)
	msg := e.serveFails(t, "BACKEND_DATA_DIR="+filepath.Join(e.dir, "other"))
	wantAll(t, "socket in use", msg, "another daemon is already running", e.socket, "--socket")
	// The same data directory on another socket: the database lock refuses
	// it, also in one line naming the way out. (On the same socket the
	// socket lock refuses it first, before the data directory is touched.)
	msg = e.serveFails(t, "BACKEND_SOCKET="+filepath.Join(e.dir, "other.sock"))
	wantAll(t, "database in use", msg, "in use by another daemon", "stop that daemon or use another data directory")
	if _, _, code := e.cli(t, "status"); code != exitOK {
		t.Error("the first daemon stopped answering after a second one was refused")
	}
}
