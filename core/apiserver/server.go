// Package apiserver serves the daemon's HTTP handler (Connect services and
// /metrics) on a Unix socket (mode 0600, one daemon per socket, enforced by
// a lock file beside it) and, when configured, on a TCP listener that
// requires a bearer token.
package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
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
	// TCPAddress is an optional host:port; requests on it need the token.
	TCPAddress string
	// TokenFile holds the TCP token; created (0600) when missing.
	TokenFile string
	Log       *slog.Logger
}

// ErrAlreadyRunning means another daemon holds the socket.
var ErrAlreadyRunning = errors.New("another daemon is already running")

// Server is a running API server.
type Server struct {
	opts    Options
	lock    *os.File
	unixLn  net.Listener
	tcpLn   net.Listener
	servers []*http.Server
	wg      sync.WaitGroup
	errc    chan error
}

// Start takes the socket lock, removes a stale socket, listens and serves h
// until Shutdown. The Unix socket is created with mode 0600 in a directory
// created with mode 0700 when missing.
func Start(opts Options, h http.Handler) (*Server, error) {
	if opts.Socket == "" {
		return nil, errors.New("api socket path is empty")
	}
	if len(opts.Socket) >= 108 {
		return nil, fmt.Errorf("api socket path %q is too long for a Unix socket (%d bytes, the limit is 107): choose a shorter --socket", opts.Socket, len(opts.Socket))
	}
	s := &Server{opts: opts, errc: make(chan error, 2)}
	if err := os.MkdirAll(filepath.Dir(opts.Socket), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	lock, err := os.OpenFile(opts.Socket+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open socket lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s: stop it first (`kill` its process) or use another --socket", ErrAlreadyRunning, opts.Socket)
		}
		return nil, fmt.Errorf("lock socket: %w", err)
	}
	s.lock = lock
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
	s.serve(ln, h)
	if opts.TCPAddress != "" {
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
		s.tcpLn = tln
		s.serve(tln, RequireToken(token, h))
	}
	return s, nil
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

func (s *Server) serve(ln net.Listener, h http.Handler) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC clients over h2c
	srv := &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second}
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
	if s.lock != nil {
		syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
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
func RequireToken(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":"unauthenticated","message":"missing or wrong API token (send Authorization: Bearer <token of api.token_file>)"}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}
