package testsvc

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// echoServer accepts connections and echoes every line back; it closes its
// side when the client half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

func dialProxy(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn.(*net.TCPConn)
}

// dialAndRead connects to the proxy and reads one byte. The reset of a
// refused connection may come before the dial returns or at the read.
func dialAndRead(p *Proxy) error {
	conn, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// roundTrip writes msg and reads it back from the echo server.
func roundTrip(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestProxyForwardsAndHalfCloses(t *testing.T) {
	p := newTestProxy(t)
	conn := dialProxy(t, p)
	roundTrip(t, conn, "<stream:stream>")
	if p.Conns() != 1 || p.Accepted() != 1 || p.Port() == 0 {
		t.Errorf("Conns %d, Accepted %d, Port %d", p.Conns(), p.Accepted(), p.Port())
	}
	// A client half-close reaches the server, whose close comes back.
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after half-close: read %d, %v; want EOF", n, err)
	}
}

func TestProxyCutAll(t *testing.T) {
	p := newTestProxy(t)
	conns := []*net.TCPConn{dialProxy(t, p), dialProxy(t, p)}
	for _, c := range conns {
		roundTrip(t, c, "ping")
	}
	p.CutAll()
	for i, c := range conns {
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("conn %d: read after CutAll: %v, want connection reset", i, err)
		}
	}
	// The proxy still accepts.
	roundTrip(t, dialProxy(t, p), "again")
}

func TestProxySendStreamEnd(t *testing.T) {
	tests := []struct {
		name    string
		tls     bool
		wantEnd string
	}{
		{"plaintext", false, "</stream:stream>"},
		// After the client's TLS ClientHello (record type 0x16) nothing can
		// be forged: the client only sees the clean close.
		{"after TLS", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t)
			conn := dialProxy(t, p)
			roundTrip(t, conn, "<stream:stream>")
			if tt.tls {
				roundTrip(t, conn, "\x16\x03\x01")
			}
			p.SendStreamEnd()
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("read after SendStreamEnd: %v (want data then EOF)", err)
			}
			if string(got) != tt.wantEnd {
				t.Errorf("client read %q, want %q", got, tt.wantEnd)
			}
			// The client's own stream end is swallowed, then its close ends
			// the connection.
			_, _ = io.WriteString(conn, "</stream:stream>")
			conn.Close()
		})
	}
}

func TestProxyPauseResume(t *testing.T) {
	p := newTestProxy(t)
	conn := dialProxy(t, p)
	roundTrip(t, conn, "a")
	p.Pause()
	if _, err := io.WriteString(conn, "held"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while paused: %d bytes, %v; want a timeout", n, err)
	}
	p.Resume()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "held" {
		t.Fatalf("after Resume: %q, %v", buf, err)
	}
}

func TestProxyRefuseNew(t *testing.T) {
	p := newTestProxy(t)
	p.RefuseNew(true)
	if err := dialAndRead(p); err == nil {
		t.Fatal("read on a refused connection succeeded")
	}
	p.RefuseNew(false)
	roundTrip(t, dialProxy(t, p), "ok")
	if p.Accepted() != 2 {
		t.Errorf("Accepted() = %d, want 2", p.Accepted())
	}
}

func TestProxyUnreachableTarget(t *testing.T) {
	// Port 1 (tcpmux) is closed on any test machine; a port from freePort
	// could be handed to the proxy's own listener right after.
	p, err := NewProxy("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := dialAndRead(p); err == nil {
		t.Fatal("read through a proxy to a closed port succeeded")
	}
}
