package testsvc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 between clients and a server, which
// tests use to break connections the way networks and servers do. Point the
// client at Addr instead of the server. It forwards bytes untouched (TLS
// goes end to end: the proxy never sees plaintext after STARTTLS) and
// propagates half-closes and resets from either side.
//
// What each fault really looks like to the client:
//   - CutAll: an abrupt TCP cut seen at once: both sides get a RST, the
//     client's next read or write fails with "connection reset by peer".
//     (A silent cut, where nothing arrives any more, is Pause.)
//   - Pause/Resume: a network that stops delivering without closing: reads
//     block, writes are buffered; only the client's own timeouts (pings)
//     notice. Resume delivers what was held.
//   - SendStreamEnd: the server ending the stream. See its documentation:
//     it is exact only before STARTTLS; afterwards it is a clean TCP close
//     without the (encrypted) </stream:stream>. For a genuine server-side
//     stream close after TLS use XMPPServer.CloseStream, or
//     XMPPServer.Restart for a server shutdown.
//   - RefuseNew: a server that resets new connections right after accepting
//     them (a reconnecting client fails at once and must back off).
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	conns    map[*proxyConn]struct{}
	closed   bool
	refuse   bool
	resumed  chan struct{} // closed while not paused
	accepted int
}

// NewProxy listens on a free port of 127.0.0.1 and forwards every accepted
// connection to target ("host:port"). Close it when done.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	resumed := make(chan struct{})
	close(resumed)
	p := &Proxy{target: target, ln: ln, conns: map[*proxyConn]struct{}{}, resumed: resumed}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port on 127.0.0.1.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Accepted is the number of client connections accepted so far (refused
// ones included), e.g. to see that a client reconnected.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Conns is the number of connections being forwarded now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// CutAll abruptly closes every current connection: both the client and the
// server get a TCP reset. New connections are still accepted.
func (p *Proxy) CutAll() {
	for _, c := range p.snapshot() {
		c.abort()
	}
}

// SendStreamEnd makes every current connection look closed by the server:
// the proxy stops forwarding, closes its connection to the server (which
// sees its client leave), and closes its sending side towards the client
// after writing "</stream:stream>" if the connection is still in plaintext
// (the client has not started TLS). The client thus reads the stream end
// and then EOF, and may still send its own "</stream:stream>", which is
// swallowed; the connection is closed when the client closes it, or after
// 5 seconds.
//
// Limitation: once the client started TLS, the stream is encrypted end to
// end and the proxy cannot forge the server's "</stream:stream>": such
// connections only get the clean close (the client's TLS layer reads EOF
// without a close_notify, where a real server would send the stream end
// first). Use XMPPServer.CloseStream for a real server-side stream close.
// Writing into the middle of a partly forwarded element is not guarded
// against: call it while the server is quiet.
func (p *Proxy) SendStreamEnd() {
	for _, c := range p.snapshot() {
		c.end()
	}
}

// Pause stops forwarding in both directions without closing anything, as a
// network that silently drops everything would (bytes are held, not lost).
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
		p.resumed = make(chan struct{})
	default: // already paused
	}
}

// Resume undoes Pause: held bytes are delivered and forwarding goes on.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
	default:
		close(p.resumed)
	}
}

// RefuseNew makes the proxy reset (refuse=true) or forward (false) the
// connections it accepts from now on; current ones are not affected.
func (p *Proxy) RefuseNew(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
}

// Close stops listening, resets every connection and waits for the
// forwarding goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Resume()
	p.CutAll()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("close proxy listener: %w", err)
	}
	return nil
}

func (p *Proxy) snapshot() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// gate returns a channel that is closed while the proxy is not paused.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resumed
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		client := conn.(*net.TCPConn)
		p.mu.Lock()
		p.accepted++
		refuse := p.refuse || p.closed
		p.mu.Unlock()
		if refuse {
			resetConn(client)
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve connects to the target and forwards between it and client.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	conn, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		resetConn(client) // the client sees the server unreachable
		return
	}
	c := &proxyConn{p: p, client: client, server: conn.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.abort()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	var fw sync.WaitGroup
	fw.Add(2)
	go func() { defer fw.Done(); c.forward(true) }()
	go func() { defer fw.Done(); c.forward(false) }()
	fw.Wait()
	c.closeBoth()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// proxyConn is one forwarded client connection.
type proxyConn struct {
	p              *Proxy
	client, server *net.TCPConn
	done           chan struct{} // closed when the connection is torn down
	doneOnce       sync.Once

	wmu     sync.Mutex  // serialises writes to the client; guards ending
	ending  bool        // SendStreamEnd: forward nothing more
	tls     atomic.Bool // the client started TLS
	halfEOF atomic.Int32
}

// forward copies one direction until an error or EOF. A clean EOF is passed
// on as a half-close; any other error tears the connection down with
// resets, so that the other side sees what this side saw.
func (c *proxyConn) forward(toServer bool) {
	src, dst := c.server, c.client
	if toServer {
		src, dst = c.client, c.server
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if toServer && !c.tls.Load() && bytes.IndexByte(buf[:n], 0x16) >= 0 {
				// 0x16 (a TLS handshake record) never occurs in XML: the
				// client sent its ClientHello after <proceed/>.
				c.tls.Store(true)
			}
			select {
			case <-c.p.gate():
			case <-c.done:
				return
			}
			if werr := c.write(toServer, dst, buf[:n]); werr != nil {
				if !c.isEnding() {
					c.abort()
				}
				return
			}
		}
		if err != nil {
			switch {
			case c.isEnding():
				// The client side is draining after SendStreamEnd: its EOF,
				// error or deadline ends the connection.
				if toServer {
					c.closeBoth()
				}
			case errors.Is(err, io.EOF):
				_ = dst.CloseWrite()
				if c.halfEOF.Add(1) == 2 {
					c.closeBoth()
				}
			default:
				c.abort()
			}
			return
		}
	}
}

// write forwards b to dst unless SendStreamEnd started.
func (c *proxyConn) write(toServer bool, dst *net.TCPConn, b []byte) error {
	if toServer {
		if c.isEnding() {
			return nil // swallowed: the "server" is gone
		}
		_, err := dst.Write(b)
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ending {
		return nil
	}
	_, err := dst.Write(b)
	return err
}

func (c *proxyConn) isEnding() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ending
}

// end implements SendStreamEnd for one connection.
func (c *proxyConn) end() {
	c.wmu.Lock()
	if c.ending {
		c.wmu.Unlock()
		return
	}
	c.ending = true
	if !c.tls.Load() {
		_ = c.client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.WriteString(c.client, "</stream:stream>")
	}
	_ = c.client.CloseWrite()
	c.wmu.Unlock()
	_ = c.server.Close()
	// The client->server loop drains the client until it closes.
	_ = c.client.SetReadDeadline(time.Now().Add(5 * time.Second))
}

// abort resets both sides.
func (c *proxyConn) abort() {
	resetConn(c.client)
	resetConn(c.server)
	c.markDone()
}

// closeBoth closes both sides normally.
func (c *proxyConn) closeBoth() {
	_ = c.client.Close()
	_ = c.server.Close()
	c.markDone()
}

func (c *proxyConn) markDone() {
	c.doneOnce.Do(func() { close(c.done) })
}

// resetConn closes conn with a TCP reset instead of a FIN.
func resetConn(conn *net.TCPConn) {
	_ = conn.SetLinger(0)
	_ = conn.Close()
}

// ProxyFor starts a Proxy in front of srv, closed when the test ends.
func ProxyFor(tb testing.TB, srv *XMPPServer) *Proxy {
	tb.Helper()
	p, err := NewProxy(srv.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
