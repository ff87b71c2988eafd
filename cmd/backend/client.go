package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	"example.org/backend/api/backendv2/backendv2connect"
	"example.org/backend/core/apiserver"
	"example.org/backend/core/config"
)

// unreachableError means the daemon could not be reached (exit code 3).
type unreachableError struct {
	target string
	err    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the daemon at %s (%v): start it with `backend serve`, or point --socket / BACKEND_SOCKET at the socket it serves", e.target, e.err)
}
func (e *unreachableError) Unwrap() error { return e.err }

// socketPath is the API socket clients use: --socket, BACKEND_SOCKET, then
// the default of DESIGN §9.
func (a *app) socketPath() string {
	if a.socket != "" {
		return a.socket
	}
	if v, ok := a.lookup("BACKEND_SOCKET"); ok && v != "" {
		return v
	}
	return config.DefaultSocket(a.lookup)
}

// conn is an HTTP client and base URL for the daemon's API.
type conn struct {
	http    *http.Client
	baseURL string
	target  string
	opts    []connect.ClientOption
}

func (a *app) dial() (*conn, error) {
	target := a.socketPath()
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		tokenFile := a.tokenFile
		if tokenFile == "" {
			tokenFile, _ = a.lookup("BACKEND_TOKEN_FILE")
		}
		var opts []connect.ClientOption
		if tokenFile != "" {
			raw, err := os.ReadFile(tokenFile)
			if err != nil {
				return nil, usagef("read token file: %v", err)
			}
			tok := strings.TrimSpace(string(raw))
			opts = append(opts, connect.WithInterceptors(bearer(tok)))
		}
		client := http.DefaultClient
		if strings.HasPrefix(target, "https://") {
			tc, err := a.tlsConfig()
			if err != nil {
				return nil, err
			}
			client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment}}
		} else if a.tlsFingerprint != "" || a.tlsCAFile != "" {
			return nil, usagef("--tls-fingerprint and --tls-ca-file need an https:// --socket")
		}
		return &conn{http: client, baseURL: strings.TrimRight(target, "/"), target: target, opts: opts}, nil
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", target)
		},
	}
	return &conn{http: &http.Client{Transport: tr}, baseURL: "http://backend", target: target}, nil
}

// tlsConfig verifies the daemon's certificate: pinned by its SHA-256
// (--tls-fingerprint), else by a CA file (--tls-ca-file), else by the
// system roots.
func (a *app) tlsConfig() (*tls.Config, error) {
	fp, ca := a.tlsFingerprint, a.tlsCAFile
	if fp == "" {
		fp, _ = a.lookup("BACKEND_TLS_FINGERPRINT")
	}
	if ca == "" {
		ca, _ = a.lookup("BACKEND_TLS_CA_FILE")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if fp != "" {
		want, err := apiserver.NormalizeFingerprint(fp)
		if err != nil {
			return nil, usagef("--tls-fingerprint: %v", err)
		}
		// The pin replaces chain and name checks: the certificate is the
		// one whose digest the user gave.
		tc.InsecureSkipVerify = true
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the daemon sent no TLS certificate")
			}
			if got := apiserver.Fingerprint(raw[0]); got != want {
				return fmt.Errorf("the daemon's TLS certificate has fingerprint %s, not the pinned %s: check --tls-fingerprint against `backend status` on the daemon's machine", got, want)
			}
			return nil
		}
		return tc, nil
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, usagef("read --tls-ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca-file %s holds no PEM certificate", ca)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (c *conn) daemon() backendv2connect.DaemonServiceClient {
	return backendv2connect.NewDaemonServiceClient(c.http, c.baseURL, c.opts...)
}

// check turns a transport failure into an unreachableError.
func (c *conn) check(err error) error {
	if err == nil {
		return nil
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return &unreachableError{target: c.target, err: errors.Unwrap(errors.Unwrap(err))}
	}
	var ce *connect.Error
	// Only a failure of the client's own connection: an error the daemon
	// sent (say, an XMPP server it cannot dial) is not "daemon unreachable".
	if errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable && !connect.IsWireError(ce) && strings.Contains(ce.Message(), "dial") {
		return &unreachableError{target: c.target, err: err}
	}
	return err
}

func bearer(token string) connect.Interceptor {
	return &bearerInterceptor{header: "Bearer " + token}
}

type bearerInterceptor struct{ header string }

func (b *bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", b.header)
		return next(ctx, req)
	}
}

func (b *bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c := next(ctx, spec)
		c.RequestHeader().Set("Authorization", b.header)
		return c
	}
}

func (b *bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
