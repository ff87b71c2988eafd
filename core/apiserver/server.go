// Package apiserver serves the daemon's HTTP handler (Connect services and
// /metrics) on a Unix socket (mode 0600, one daemon per socket, enforced by
// a lock file beside it) and, when configured, on a TCP listener that
// requires a bearer token and TLS (a given certificate or a self-signed one
// kept in the data directory), with an Origin check for browsers. Every
// request is bounded (api.max_request_bytes, decompressed).
package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"example.org/backend/core/config"
)

// Options configure the listeners.
type Options struct {
	// Socket is the Unix socket path (required).
	Socket string
	// Lock is the socket's lock, taken with [Lock] before anything else of
	// the daemon is touched; nil: Start takes it.
	Lock *SocketLock
	// TCPAddress is an optional host:port; requests on it need the token.
	TCPAddress string
	// TokenFile holds the TCP token; created (0600) when missing.
	TokenFile string
	// TLS is the TCP listener's certificate (see LoadOrCreateCertificate);
	// nil serves plain HTTP, which Plaintext must allow.
	TLS *tls.Certificate
	// Plaintext is api.tcp_plaintext: "" (TLS required), "loopback" (plain
	// HTTP on a loopback address only) or "insecure" (plain HTTP anywhere).
	Plaintext string
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// on the TCP listener, with CORS; a request with another Origin is
	// refused.
	AllowedOrigins []string
	// MaxRequestBytes bounds request bodies (api.max_request_bytes); 0:
	// config.DefaultMaxRequestBytes.
	MaxRequestBytes int64
	Log             *slog.Logger
}

// ErrAlreadyRunning means another daemon holds the socket.
var ErrAlreadyRunning = errors.New("another daemon is already running")

// Server is a running API server.
type Server struct {
	opts    Options
	lock    *SocketLock
	unixLn  net.Listener
	tcpLn   net.Listener
	servers []*http.Server
	wg      sync.WaitGroup
	errc    chan error
}

// SocketLock is the lock file beside the socket: one daemon per socket.
type SocketLock struct {
	f *os.File
}

// Lock takes the lock of socket (creating its directory, mode 0700, when
// missing). A daemon takes it before it touches its data directory or
// database, so that a second daemon on a busy socket changes nothing.
func Lock(socket string) (*SocketLock, error) {
	if socket == "" {
		return nil, errors.New("api socket path is empty")
	}
	if len(socket) >= 108 {
		return nil, fmt.Errorf("api socket path %q is too long for a Unix socket (%d bytes, the limit is 107): choose a shorter --socket", socket, len(socket))
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	f, err := os.OpenFile(socket+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open socket lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s: stop it first (`kill` its process) or use another --socket", ErrAlreadyRunning, socket)
		}
		return nil, fmt.Errorf("lock socket: %w", err)
	}
	return &SocketLock{f: f}, nil
}

// Release drops the lock (idempotent).
func (l *SocketLock) Release() {
	if l != nil && l.f != nil {
		syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

// Start takes the socket lock (unless opts.Lock holds it), removes a stale
// socket, listens and serves h until Shutdown. The Unix socket is created
// with mode 0600 in a directory created with mode 0700 when missing. Every
// request body is bounded (see limitBodies); HTTP/2 connections carry at
// most MaxConcurrentStreams streams.
func Start(opts Options, h http.Handler) (*Server, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = config.DefaultMaxRequestBytes
	}
	h = limitBodies(opts.MaxRequestBytes, h)
	s := &Server{opts: opts, errc: make(chan error, 2), lock: opts.Lock}
	if s.lock == nil {
		l, err := Lock(opts.Socket)
		if err != nil {
			return nil, err
		}
		s.lock = l
	}
	// We hold the lock: any socket file left is stale.
	if err := os.Remove(opts.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.releaseLock()
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", opts.Socket)
	syscall.Umask(old)
	if err != nil {
		s.releaseLock()
		return nil, fmt.Errorf("listen on %s: %w", opts.Socket, err)
	}
	if err := os.Chmod(opts.Socket, 0o600); err != nil {
		ln.Close()
		s.releaseLock()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	s.unixLn = ln
	s.serve(ln, h, false)
	if opts.TCPAddress != "" {
		if err := CheckPlaintext(opts.TCPAddress, opts.TLS != nil, opts.Plaintext); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
		token, err := LoadOrCreateToken(opts.TokenFile)
		if err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
		tln, err := ListenTCP("api.tcp_address", opts.TCPAddress)
		if err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
		if opts.TLS != nil {
			tln = tls.NewListener(tln, &tls.Config{
				Certificates: []tls.Certificate{*opts.TLS}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
			})
		}
		s.tcpLn = tln
		s.serve(tln, CheckOrigin(opts.AllowedOrigins, RequireToken(token, h)), opts.TLS != nil)
	}
	return s, nil
}

// CheckPlaintext refuses a TCP listener without TLS unless api.tcp_plaintext
// allows it: "loopback" on a loopback address, "insecure" anywhere.
func CheckPlaintext(addr string, hasTLS bool, plaintext string) error {
	switch plaintext {
	case "", "loopback", "insecure":
	default:
		return fmt.Errorf("api.tcp_plaintext: %q is not \"\", \"loopback\" or \"insecure\"", plaintext)
	}
	if hasTLS {
		return nil
	}
	switch {
	case plaintext == "":
		return errors.New("api.tcp_address without TLS: set api.tls_cert and api.tls_key, or leave them empty for a self-signed certificate")
	case plaintext == "insecure":
		return nil
	}
	if !isLoopback(addr) {
		return fmt.Errorf("api.tcp_address %s is not a loopback address: plain HTTP there would send the token in clear; use TLS (unset api.tcp_plaintext) or set api.tcp_plaintext = \"insecure\" if something else encrypts the traffic", addr)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ListenTCP listens on addr, the value of the configuration key key (e.g.
// "api.tcp_address"). Its error is one line naming the address and how to
// change it: the key in the config file or its BACKEND_* variable.
func ListenTCP(key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	env := config.Key{Name: key}.Env()
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s %s is already in use by another process: stop that process, or set %s (config file or %s) to a free host:port", key, addr, key, env)
	}
	return nil, fmt.Errorf("%s %s: cannot listen (%w): set %s (config file or %s) to a free host:port of this machine", key, addr, err, key, env)
}

func (s *Server) serve(ln net.Listener, h http.Handler, overTLS bool) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if overTLS {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true) // gRPC clients over h2c
	}
	srv := &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams}}
	if s.opts.Log != nil {
		// The server's own complaints (a failed TLS handshake: a client
		// without the pin, plain HTTP to the TLS port) go to the daemon's
		// log, structured, not to the standard logger.
		srv.ErrorLog = slog.NewLogLogger(s.opts.Log.With("component", "api").Handler(), slog.LevelInfo)
	}
	if overTLS {
		// The listener does the TLS; the server must know for HTTP/2.
		srv.TLSConfig = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("api server on %s: %w", ln.Addr(), err)
		}
	}()
}

// Err delivers a listener failure.
func (s *Server) Err() <-chan error { return s.errc }

// TCPAddr is the bound TCP address, or nil.
func (s *Server) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// Shutdown stops accepting, cancels open streams once ctx ends, removes the
// socket and releases the lock.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			srv.Close()
		}
	}
	s.wg.Wait()
	if s.unixLn != nil {
		// net's Unix listener unlinks the path on Close; make sure it is gone.
		if err := os.Remove(s.opts.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.releaseLock()
	return errors.Join(errs...)
}

func (s *Server) releaseLock() {
	s.lock.Release()
	s.lock = nil
}

// LoadOrCreateToken reads the TCP API token, creating a random one (file
// mode 0600) when the file does not exist. A token file readable by group or
// others is refused.
func LoadOrCreateToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("api.token_file is empty")
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("create token directory: %w", err)
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		tok := hex.EncodeToString(b)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("create token file: %w", err)
		}
		if _, err := f.WriteString(tok + "\n"); err != nil {
			f.Close()
			return "", fmt.Errorf("write token file: %w", err)
		}
		return tok, f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("token file %s has mode %o: it must not be readable by others (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	tok := strings.TrimSpace(string(raw))
	if len(tok) < 16 {
		return "", fmt.Errorf("token file %s holds a token shorter than 16 characters", path)
	}
	return tok, nil
}

// RequireToken wraps h so that every request must carry
// `Authorization: Bearer <token>`; others get 401 with a Connect error body.
// The comparison takes the same time whatever the length or content of what
// was sent (SHA-256 digests compared in constant time). CORS preflights
// (OPTIONS, which browsers send without credentials) pass to CheckOrigin.
func RequireToken(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":"unauthenticated","message":"missing or wrong API token (send Authorization: Bearer <token of api.token_file>)"}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CheckOrigin wraps h for browsers: a request with an Origin header is
// refused (403) unless the origin is in allowed (api.allowed_origins); an
// allowed origin gets CORS headers, and its preflights are answered here.
// Requests without Origin (the CLI, gRPC clients) pass.
func CheckOrigin(allowed []string, h http.Handler) http.Handler {
	ok := map[string]bool{}
	for _, o := range allowed {
		ok[strings.TrimRight(o, "/")] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		if !ok[origin] {
			writeConnectError(w, http.StatusForbidden, "permission_denied",
				fmt.Sprintf("origin %s is not allowed: add it to api.allowed_origins", origin))
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
		hd.Set("Access-Control-Expose-Headers", "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Connect-Content-Encoding")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, POST")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Accept-Encoding, Connect-Content-Encoding, Grpc-Timeout, X-Grpc-Web, X-User-Agent")
			hd.Set("Access-Control-Max-Age", "7200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}
