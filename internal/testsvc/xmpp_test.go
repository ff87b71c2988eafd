package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// startedServer is the outcome of starting one server for the tests.
type startedServer struct {
	srv  *XMPPServer
	err  error
	took time.Duration
}

// startServers starts the servers of specs concurrently (each once for the
// whole test) and stops them when the test ends.
func startServers(t *testing.T, specs map[string]func(context.Context) (*XMPPServer, error)) map[string]*startedServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := map[string]*startedServer{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, start := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			srv, err := start(ctx)
			mu.Lock()
			out[name] = &startedServer{srv: srv, err: err, took: time.Since(t0)}
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for name, s := range out {
			if err := s.srv.Stop(); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
			if s.srv != nil {
				if _, err := os.Stat(s.srv.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stop %s: directory %s left behind (%v)", name, s.srv.Dir, err)
				}
			}
		}
	})
	return out
}

// TestXMPPServers starts each kind of server once (plus a SCRAM-only one of
// each kind) and checks the harness against them: accounts, logins over
// STARTTLS, SCRAM-only mode, server-side stream close, proxy cuts, restart.
func TestXMPPServers(t *testing.T) {
	logDir := t.TempDir()
	opts := func(kind string, scram bool) XMPPOptions {
		return XMPPOptions{
			ScramOnly: scram,
			Admins:    []string{"alice@localhost"},
			Accounts:  map[string]string{"alice": "alice-secret"},
			LogDir:    fmt.Sprintf("%s/%s-scram-%v", logDir, kind, scram),
		}
	}
	servers := startServers(t, map[string]func(context.Context) (*XMPPServer, error){
		"prosody":        func(ctx context.Context) (*XMPPServer, error) { return StartProsody(ctx, opts("prosody", false)) },
		"ejabberd":       func(ctx context.Context) (*XMPPServer, error) { return StartEjabberd(ctx, opts("ejabberd", false)) },
		"prosody-scram":  func(ctx context.Context) (*XMPPServer, error) { return StartProsody(ctx, opts("prosody", true)) },
		"ejabberd-scram": func(ctx context.Context) (*XMPPServer, error) { return StartEjabberd(ctx, opts("ejabberd", true)) },
	})
	for _, kind := range []string{KindProsody, KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			s := servers[kind]
			RequireXMPP(t, s.err)
			Uses(t, kind)
			srv := s.srv
			t.Logf("%s started in %s (concurrently with the others) on %s", kind, s.took.Round(time.Millisecond), srv.Addr())
			checkServer(t, srv)
		})
		t.Run(kind+"-scram-only", func(t *testing.T) {
			s := servers[kind+"-scram"]
			RequireXMPP(t, s.err)
			Uses(t, kind)
			checkScramOnly(t, s.srv)
		})
	}
}

func checkServer(t *testing.T, srv *XMPPServer) {
	ctx := context.Background()
	if srv.Domain != "localhost" || srv.PubSub != "pubsub.localhost" || srv.Host != "127.0.0.1" {
		t.Fatalf("server names = %q %q %q", srv.Domain, srv.PubSub, srv.Host)
	}
	for _, path := range []string{srv.CAFile, strings.TrimSuffix(srv.CAFile, ".crt") + ".key"} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", path, st.Mode().Perm())
		}
	}

	accounts := map[string]string{"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
	t.Run("Register", func(t *testing.T) {
		for _, user := range []string{"bob", "carol"} {
			t0 := time.Now()
			if err := srv.Register(ctx, user, accounts[user]); err != nil {
				t.Fatal(err)
			}
			t.Logf("Register(%s) took %s", user, time.Since(t0).Round(time.Millisecond))
		}
		// Registering again sets the password.
		if err := srv.Register(ctx, "carol", accounts["carol"]); err != nil {
			t.Fatalf("register an existing account: %v", err)
		}
		if err := srv.Register(ctx, "bad user", "x"); err == nil {
			t.Error("Register accepted a user name with a space")
		}
	})

	t.Run("Login", func(t *testing.T) {
		tests := []struct {
			user, password string
			wantErr        bool
		}{
			{"alice", accounts["alice"], false}, // XMPPOptions.Accounts
			{"bob", accounts["bob"], false},
			{"carol", accounts["carol"], false},
			{"bob", "wrong", true},
			{"nobody", "whatever", true},
		}
		for _, tt := range tests {
			c, err := login(ctx, srv.Addr(), srv, tt.user, tt.password, "t")
			if (err != nil) != tt.wantErr {
				t.Errorf("login(%s) error = %v, want error %v", tt.user, err, tt.wantErr)
			}
			if err == nil {
				if want := tt.user + "@localhost/"; !strings.HasPrefix(c.jid, want) {
					t.Errorf("bound JID %q, want %s…", c.jid, want)
				}
				c.Close()
			}
		}
	})

	t.Run("PubSubDisco", func(t *testing.T) {
		c, err := login(ctx, srv.Addr(), srv, "alice", accounts["alice"], "disco")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cats, err := c.discoInfo(srv.PubSub)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cats, "pubsub/service") {
			t.Errorf("disco#info of %s: identities %v, want pubsub/service", srv.PubSub, cats)
		}
	})

	t.Run("AdminInterface", func(t *testing.T) {
		if srv.Kind == KindProsody {
			tests := []struct{ command, want string }{
				{`config:get("pubsub.localhost", "pubsub_max_items")`, "20000"},
				{`config:get("pubsub.localhost", "expose_publisher")`, "true"},
				{`config:get("localhost", "pep_max_items")`, "20000"},
				{`config:get("localhost", "storage")`, "sql"},
				{`config:get("*", "admins")`, "alice@localhost"},
			}
			for _, tt := range tests {
				out, err := srv.Shell(ctx, tt.command)
				if err != nil || !strings.Contains(out, tt.want) {
					t.Errorf("Shell(%s) = %q, %v; want %q", tt.command, out, err, tt.want)
				}
			}
			if _, err := srv.API(ctx, "status", nil); err == nil {
				t.Error("API on Prosody did not fail")
			}
			return
		}
		out, err := srv.API(ctx, "registered_users", map[string]string{"host": srv.Domain})
		if err != nil {
			t.Fatal(err)
		}
		for _, user := range []string{"alice", "bob", "carol"} {
			if !strings.Contains(string(out), `"`+user+`"`) {
				t.Errorf("registered_users = %s, lacks %s", out, user)
			}
		}
		var apiErr *APIError
		if _, err := srv.API(ctx, "no_such_command", map[string]string{}); !errors.As(err, &apiErr) {
			t.Errorf("unknown command: error %v, want an *APIError", err)
		}
		if _, err := srv.Shell(ctx, "c2s:show()"); err == nil {
			t.Error("Shell on ejabberd did not fail")
		}
	})

	t.Run("PLAINOffered", func(t *testing.T) {
		c, mechs, err := dialTLS(ctx, srv.Addr(), srv)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !slices.Contains(mechs, "PLAIN") {
			t.Errorf("mechanisms %v lack PLAIN on a default server", mechs)
		}
	})

	t.Run("CloseStream", func(t *testing.T) {
		for _, full := range []bool{false, true} {
			c, err := login(ctx, srv.Addr(), srv, "bob", accounts["bob"], fmt.Sprintf("close-%v", full))
			if err != nil {
				t.Fatal(err)
			}
			jid := "bob@localhost"
			if full {
				jid = c.jid
			}
			if err := srv.CloseStream(ctx, jid); err != nil {
				t.Fatalf("CloseStream(%s): %v", jid, err)
			}
			end, err := c.readToEnd()
			c.Close()
			if !end.streamEnd {
				t.Errorf("CloseStream(%s): client saw no </stream:stream> (stream error %q, err %v)", jid, end.streamError, err)
			}
			t.Logf("CloseStream(%s): stream error %q", jid, end.streamError)
		}
		if err := srv.CloseStream(ctx, "nobody@localhost"); err == nil {
			t.Error("CloseStream of an account without session succeeded")
		}
	})

	t.Run("ProxyCutAll", func(t *testing.T) {
		p, err := NewProxy(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := login(ctx, p.Addr(), srv, "carol", accounts["carol"], "proxied")
		if err != nil {
			t.Fatalf("login through the proxy: %v", err)
		}
		defer c.Close()
		p.CutAll()
		end, err := c.readToEnd()
		if err == nil || end.streamEnd {
			t.Fatalf("read after CutAll: stream end %v, err %v; want a failed read", end.streamEnd, err)
		}
		// The server is not affected: a new login through the proxy works.
		c2, err := login(ctx, p.Addr(), srv, "carol", accounts["carol"], "again")
		if err != nil {
			t.Fatalf("login after CutAll: %v", err)
		}
		c2.Close()
		if p.Accepted() != 2 {
			t.Errorf("Accepted() = %d, want 2", p.Accepted())
		}
	})

	t.Run("ProxySendStreamEnd", func(t *testing.T) {
		p, err := NewProxy(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		// Before STARTTLS the stream end is forged exactly.
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &xmppConn{Conn: conn}
		if _, err := c.openStream(srv.Domain); err != nil {
			t.Fatal(err)
		}
		p.SendStreamEnd()
		end, err := c.readToEnd()
		if !end.streamEnd {
			t.Errorf("plaintext: no </stream:stream> after SendStreamEnd (err %v)", err)
		}
		// After STARTTLS: a clean close the client's TLS layer sees.
		tc, err := login(ctx, p.Addr(), srv, "carol", accounts["carol"], "end")
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		p.SendStreamEnd()
		if _, err := tc.readToEnd(); err == nil {
			t.Error("TLS: read after SendStreamEnd did not fail")
		}
	})

	t.Run("Restart", func(t *testing.T) {
		c, err := login(ctx, srv.Addr(), srv, "bob", accounts["bob"], "before-restart")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		port := srv.Port
		t0 := time.Now()
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Restart took %s", time.Since(t0).Round(time.Millisecond))
		if srv.Port != port {
			t.Errorf("port changed from %d to %d", port, srv.Port)
		}
		end, err := c.readToEnd()
		t.Logf("client at restart: stream end %v, stream error %q, err %v", end.streamEnd, end.streamError, err)
		for _, user := range []string{"alice", "bob", "carol"} {
			c, err := login(ctx, srv.Addr(), srv, user, accounts[user], "after-restart")
			if err != nil {
				t.Fatalf("login(%s) after restart: %v", user, err)
			}
			c.Close()
		}
	})
}

func checkScramOnly(t *testing.T, srv *XMPPServer) {
	ctx := context.Background()
	c, mechs, err := dialTLS(ctx, srv.Addr(), srv)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if slices.Contains(mechs, "PLAIN") {
		t.Errorf("ScramOnly server offers PLAIN: %v", mechs)
	}
	if !slices.Contains(mechs, "SCRAM-SHA-1") {
		t.Errorf("ScramOnly server offers no SCRAM-SHA-1: %v", mechs)
	}
	if _, err := login(ctx, srv.Addr(), srv, "alice", "alice-secret", "t"); err == nil {
		t.Error("PLAIN login succeeded on a ScramOnly server")
	}
}

// TestStartErrors checks the errors of the start functions that do not need
// a running server.
func TestStartErrors(t *testing.T) {
	if _, err := StartXMPP(context.Background(), "openfire", XMPPOptions{}); err == nil {
		t.Error("StartXMPP accepted an unknown kind")
	}
	t.Setenv("PATH", t.TempDir()) // no binaries at all
	for _, kind := range []string{KindProsody, KindEjabberd} {
		_, err := StartXMPP(context.Background(), kind, XMPPOptions{})
		if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), xmppInstallHint) {
			t.Errorf("%s without binaries: error %v, want ErrNotInstalled with the install hint", kind, err)
		}
	}
}

func TestLuaQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"line\nbreak", `"line\nbreak"`},
	}
	for _, tt := range tests {
		if got := luaQuote(tt.in); got != tt.want {
			t.Errorf("luaQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestWaitReadyErrors checks the start-up failures that real servers make
// hard to provoke: a busy port and a server that dies, both quoting the log.
func TestWaitReadyErrors(t *testing.T) {
	dir := t.TempDir()
	logPath := dir + "/server.log"
	tests := []struct {
		name    string
		log     string
		command []string
		want    string
		wantErr error
	}{
		{"busy port", "error Failed to open server port 5222\n", []string{"sleep", "30"}, "Failed to open server port", errPortInUse},
		{"exits", "critical config broken\n", []string{"true"}, "config broken", nil},
		{"exits on a busy port", "reason: eaddrinuse\n", []string{"true"}, "eaddrinuse", errPortInUse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(logPath, []byte(tt.log), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := startProc(tt.command[0], tt.command[1:], os.Environ(), dir, dir+"/out")
			if err != nil {
				t.Fatal(err)
			}
			defer p.stop(0)
			r := readiness{addr: "127.0.0.1:1", domain: "localhost", logPath: logPath,
				want: []string{"never logged"}, busy: []string{"Failed to open server port", "eaddrinuse"}, tail: []string{logPath}}
			err = waitReady(context.Background(), p, r, time.Minute)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("waitReady error = %v, want one quoting %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("waitReady error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
