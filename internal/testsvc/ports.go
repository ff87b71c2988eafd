package testsvc

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errPortInUse reports that a server could not listen on a port picked by
// freePort because another process took it in between; the caller retries
// with new ports.
var errPortInUse = errors.New("port already in use")

// serverProc is a server process running in its own process group, so that
// it and every process it spawned can be signalled at once.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the group leader exited
}

// startProc starts name with args in dir, its standard output and error
// appended to outPath. The process gets its own process group and is killed
// if the test process dies without stopping it.
func startProc(name string, args, env []string, dir, outPath string) (*serverProc, error) {
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s output: %w", name, err)
	}
	defer out.Close() // the child keeps its own descriptor
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &serverProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the group leader has exited.
func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace for the leader
// to exit, then kills the whole group with SIGKILL and waits until no
// process of the group is left (at most a few seconds). A zero grace kills
// at once.
func (p *serverProc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	if grace > 0 && !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	// Children may outlive the leader (e.g. Erlang port programs): kill the
	// group even when the leader is gone.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}

// groupAlive reports whether a process of group pgid is still running (not
// a zombie waiting for its new parent to reap it).
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return true // no /proc: trust kill(2)
	}
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// readiness describes how to tell that a starting server is serving.
type readiness struct {
	// addr is the c2s address probed with a stream open.
	addr, domain string
	// logPath is the server's log; every line of want must appear in it.
	logPath string
	offset  int64 // log bytes written before this start, ignored
	want    []string
	// busy are log fragments meaning that a port was taken (errPortInUse).
	busy []string
	// tail lists the files whose last lines are quoted in errors.
	tail []string
}

// waitReady waits until the process logged every wanted line and answers a
// stream open on the c2s port with its own stream header. It fails when the
// process exits, when the log reports a busy port (errPortInUse), or after
// timeout; errors quote the tail of the server's logs.
func waitReady(ctx context.Context, p *serverProc, r readiness, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		log := readFrom(r.logPath, r.offset)
		for _, b := range r.busy {
			if strings.Contains(log, b) {
				return fmt.Errorf("%w: %s", errPortInUse, tailFiles(r.tail...))
			}
		}
		lastErr = nil
		for _, w := range r.want {
			if !strings.Contains(log, w) {
				lastErr = fmt.Errorf("log has no %q yet", w)
				break
			}
		}
		if lastErr == nil {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			lastErr = probeStream(pctx, r.addr, r.domain)
			cancel()
			if lastErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for server: %w: %s", ctx.Err(), tailFiles(r.tail...))
		case <-p.done:
			log := readFrom(r.logPath, r.offset)
			for _, b := range r.busy {
				if strings.Contains(log, b) {
					return fmt.Errorf("%w: %s", errPortInUse, tailFiles(r.tail...))
				}
			}
			return fmt.Errorf("server exited at start-up (%v): %s", p.cmd.ProcessState, tailFiles(r.tail...))
		case <-deadline.C:
			return fmt.Errorf("server not ready after %s: %v: %s", timeout, lastErr, tailFiles(r.tail...))
		case <-tick.C:
		}
	}
}

// readFrom returns the content of a file after offset ("" on errors).
func readFrom(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	return string(data[offset:])
}

// probeStream opens a client stream to domain on addr and returns nil once
// the server answered with its stream header.
func probeStream(ctx context.Context, addr, domain string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, streamOpen(domain)); err != nil {
		return fmt.Errorf("send stream header: %w", err)
	}
	dec := xml.NewDecoder(conn)
	for {
		tok, err := dec.RawToken()
		if err != nil {
			return fmt.Errorf("read stream header: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return fmt.Errorf("read stream header: got <%s>", se.Name.Local)
			}
			_, _ = io.WriteString(conn, "</stream:stream>")
			return nil
		}
	}
}

// streamOpen is the opening of a client-to-server stream to domain.
func streamOpen(domain string) string {
	return "<?xml version='1.0'?><stream:stream to='" + domain +
		"' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
}

// tailFiles quotes the last lines of each non-empty file, for errors.
func tailFiles(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil || len(strings.TrimSpace(string(data))) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", p, lastLines(string(data), 15))
	}
	if b.Len() == 0 {
		return "(server logs are empty)"
	}
	return b.String()
}
