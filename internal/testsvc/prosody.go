package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server kinds, the values of XMPPServer.Kind.
const (
	KindProsody  = "prosody"
	KindEjabberd = "ejabberd"
)

// xmppInstallHint is quoted by errors about missing XMPP server packages.
const xmppInstallHint = "apt-get install -y prosody lua-dbi-sqlite3 ejabberd"

// ResumeWindow is how long the test servers keep a lost stream
// resumable (XEP-0198: Prosody's smacks_hibernation_time, ejabberd's
// mod_stream_mgmt resume_timeout). A gap longer than that makes clients
// log in afresh.
const ResumeWindow = 5 * time.Second

// MaxStanzaBytes is the stanza (Prosody c2s_stanza_size_limit) and item
// payload (ejabberd mod_pubsub default_node_config max_payload_size) limit of the test servers:
// 2 MiB, so that 1 MiB items are accepted.
const MaxStanzaBytes = 2 << 20

// XMPPOptions configures a private XMPP server.
type XMPPOptions struct {
	// ScramOnly disables the PLAIN SASL mechanism, so that clients must use
	// SCRAM (Prosody: disable_sasl_mechanisms; ejabberd: the same option).
	ScramOnly bool
	// Admins are bare JIDs of server administrators. On Prosody only admins
	// may create nodes on the pubsub component; on ejabberd every local user
	// may, and admins are only put in the "admin" ACL.
	Admins []string
	// Accounts are created at start, user (local part) to password.
	Accounts map[string]string
	// LogDir receives the server's logs (in a subdirectory named after
	// Dir, so servers can share it) and outlives Stop, e.g. for CI
	// artifacts. Empty: the logs are kept in Dir and removed by Stop.
	LogDir string
	// Port is the c2s port; 0 picks a free one (ejabberd's API port is
	// always picked).
	Port int
	// DirectTLS adds a direct TLS c2s listener (XEP-0368) on a free
	// loopback port, XMPPServer.DirectTLSPort.
	DirectTLS bool
	// PasswordHash is the SCRAM hash the server stores passwords with, and
	// so the one SCRAM mechanism it offers: "SHA-1" (the default of both
	// servers), "SHA-256", or on ejabberd "SHA-512". Prosody:
	// password_hash; ejabberd: auth_scram_hash (with the scram password
	// format).
	PasswordHash string
	// PlainPasswords stores passwords in clear (ejabberd:
	// auth_password_format plain, which lets it offer SCRAM-SHA-1, -256
	// and -512 alike; Prosody: authentication internal_plain).
	PlainPasswords bool
}

// XMPPServer is a private XMPP server (Prosody or ejabberd) listening on
// 127.0.0.1 with STARTTLS required, a virtual host Domain and a pubsub
// service PubSub, using a self-signed certificate (CAFile). Start it with
// StartProsody or StartEjabberd and stop it with Stop.
type XMPPServer struct {
	// Kind is KindProsody or KindEjabberd.
	Kind string
	// Domain is the virtual host, "localhost".
	Domain string
	// PubSub is the pubsub service, "pubsub.localhost".
	PubSub string
	// Host is the c2s listening address, "127.0.0.1".
	Host string
	// Port is the c2s port (STARTTLS required).
	Port int
	// DirectTLSPort is the direct TLS c2s port (XEP-0368), 0 unless
	// XMPPOptions.DirectTLS.
	DirectTLSPort int
	// CAFile is the PEM of the server's self-signed certificate (valid for
	// Domain and PubSub), for clients' CA option.
	CAFile string
	// Dir holds the configuration, data and (unless LogDir is set) logs;
	// Stop removes it. Its path is short (unix sockets live below it).
	Dir string
	// LogFile is the server's main log.
	LogFile string
	// APIPort is ejabberd's mod_http_api port on 127.0.0.1, 0 on Prosody.
	APIPort int

	opts    XMPPOptions
	certs   certFiles
	cfgPath string
	logSub  string // where the logs go: LogDir/<base of Dir>, or Dir
	outPath string // the process's standard output and error
	env     []string

	mu      sync.Mutex
	proc    *serverProc
	stopped bool
}

// StartXMPP starts a server of the given kind (KindProsody or KindEjabberd).
func StartXMPP(ctx context.Context, kind string, opts XMPPOptions) (*XMPPServer, error) {
	switch kind {
	case KindProsody:
		return StartProsody(ctx, opts)
	case KindEjabberd:
		return StartEjabberd(ctx, opts)
	default:
		return nil, fmt.Errorf("unknown xmpp server kind %q", kind)
	}
}

// RequireXMPP handles the error of starting an XMPP server in a test, like
// RequireOrSkip: nil goes on, a missing installation skips outside CI, any
// other error (and any error under CI=true) fails the test.
func RequireXMPP(t testing.TB, err error) {
	t.Helper()
	RequireOrSkip(t, err)
}

// Addr is the c2s address, "127.0.0.1:PORT".
func (s *XMPPServer) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// StartProsody starts Prosody 0.12 in the foreground with a private
// configuration in a new directory under /tmp: c2s with STARTTLS required on
// a free loopback port (with XMPPOptions.DirectTLS a direct TLS c2s port
// too; no s2s, no HTTP), SQLite storage, no rate limits,
// PEP and the pubsub.localhost component holding up to 20000 items per node
// (the component exposes publishers), the admin shell, XEP-0198 (resumable
// for ResumeWindow). It returns
// once the server answers a stream open. The error wraps ErrNotInstalled
// when Prosody or lua-dbi-sqlite3 is missing.
func StartProsody(ctx context.Context, opts XMPPOptions) (*XMPPServer, error) {
	if err := checkProsody(); err != nil {
		return nil, err
	}
	s, err := newXMPPServer(KindProsody, "prosody-", opts)
	if err != nil {
		return nil, err
	}
	s.cfgPath = filepath.Join(s.Dir, "prosody.cfg.lua")
	s.LogFile = filepath.Join(s.logDir(), "prosody.log")
	s.outPath = filepath.Join(s.logDir(), "prosody.out")
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o700); err != nil {
		s.removeDir()
		return nil, fmt.Errorf("create prosody data directory: %w", err)
	}
	if err := s.startFresh(ctx); err != nil {
		s.removeDir()
		return nil, err
	}
	if err := s.createAccounts(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// checkProsody reports missing Prosody binaries or SQL driver.
func checkProsody() error {
	for _, bin := range []string{"prosody", "prosodyctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("prosody: %s not found (%s): %w", bin, xmppInstallHint, ErrNotInstalled)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/lua/*/dbd/sqlite3.so"); len(m) == 0 {
		if m, _ := filepath.Glob("/usr/*lib*/lua/*/dbd/sqlite3.so"); len(m) == 0 {
			return fmt.Errorf("prosody: lua-dbi-sqlite3 not found (%s): %w", xmppInstallHint, ErrNotInstalled)
		}
	}
	return nil
}

// newXMPPServer creates the server's directory and certificate.
func newXMPPServer(kind, prefix string, opts XMPPOptions) (*XMPPServer, error) {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return nil, fmt.Errorf("create %s directory: %w", kind, err)
	}
	s := &XMPPServer{
		Kind:   kind,
		Domain: "localhost",
		PubSub: "pubsub.localhost",
		Host:   "127.0.0.1",
		Dir:    dir,
		opts:   opts,
		logSub: dir,
	}
	if opts.LogDir != "" {
		s.logSub = filepath.Join(opts.LogDir, filepath.Base(dir))
		if err := os.MkdirAll(s.logSub, 0o755); err != nil {
			s.removeDir()
			return nil, fmt.Errorf("create %s log directory: %w", kind, err)
		}
	}
	if s.certs, err = writeSelfSignedCert(dir, s.Domain, s.PubSub); err != nil {
		s.removeDir()
		return nil, err
	}
	s.CAFile = s.certs.Cert
	s.env = []string{
		"PATH=" + envOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
		"HOME=" + dir,
		"LANG=C.UTF-8",
		"TZ=UTC",
	}
	return s, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// logDir is where the logs go.
func (s *XMPPServer) logDir() string { return s.logSub }

func (s *XMPPServer) removeDir() {
	_ = os.RemoveAll(s.Dir)
}

// startFresh picks free ports and starts the server, retrying with other
// ports when one was taken between the pick and the start.
func (s *XMPPServer) startFresh(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		// The ports of one server are picked together: distinct.
		var ports []int
		if ports, err = freePorts(3); err != nil {
			return err
		}
		if s.Port = s.opts.Port; s.Port == 0 {
			s.Port = ports[0]
		}
		if s.Kind == KindEjabberd {
			s.APIPort = ports[1]
		}
		if s.opts.DirectTLS {
			s.DirectTLSPort = ports[2]
		}
		s.mu.Lock()
		err = s.launch(ctx)
		s.mu.Unlock()
		if err == nil || !errors.Is(err, errPortInUse) || ctx.Err() != nil {
			return err
		}
		if s.opts.Port != 0 {
			return fmt.Errorf("%s: port %d is in use: %w", s.Kind, s.opts.Port, err)
		}
	}
	return err
}

// launch writes the configuration and starts the server on the current
// ports, then waits until it serves. It is called with s.mu held.
func (s *XMPPServer) launch(ctx context.Context) error {
	var (
		name  string
		args  []string
		ready readiness
		err   error
	)
	switch s.Kind {
	case KindProsody:
		err = os.WriteFile(s.cfgPath, []byte(s.prosodyConfig()), 0o600)
		name, args = "prosody", []string{"-F", "--config", s.cfgPath}
		ready = readiness{
			want: []string{fmt.Sprintf("Activated service 'c2s' on [%s]:%d", s.Host, s.Port)},
			busy: []string{"Failed to open server port", "Multiple services configured to listen on the same port"},
		}
		if s.DirectTLSPort != 0 {
			ready.want = append(ready.want, fmt.Sprintf("Activated service 'c2s_direct_tls' on [%s]:%d", s.Host, s.DirectTLSPort))
		}
	case KindEjabberd:
		name, args, ready, err = s.ejabberdLaunch()
	}
	if err != nil {
		return fmt.Errorf("write %s configuration: %w", s.Kind, err)
	}
	var offset int64
	if st, err := os.Stat(s.LogFile); err == nil {
		offset = st.Size() // a restart appends: look at the new lines only
	}
	ready.addr, ready.domain, ready.logPath, ready.offset = s.Addr(), s.Domain, s.LogFile, offset
	ready.tail = []string{s.LogFile, s.outPath}
	p, err := startProc(name, args, s.env, s.Dir, s.outPath)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, ready, 60*time.Second); err != nil {
		p.stop(0)
		return fmt.Errorf("start %s: %w", s.Kind, err)
	}
	s.proc = p
	return nil
}

// prosodyConfig is the private configuration file of a Prosody server.
func (s *XMPPServer) prosodyConfig() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("-- Generated by testsvc: a private, loopback-only Prosody for tests.")
	p("run_as_root = true")
	p("daemonize = false")
	p("pidfile = %s", luaQuote(filepath.Join(s.Dir, "prosody.pid")))
	p("data_path = %s", luaQuote(filepath.Join(s.Dir, "data")))
	p("log = { info = %s }", luaQuote(s.LogFile))
	p("interfaces = { %s }", luaQuote(s.Host))
	p("c2s_ports = { %d }", s.Port)
	p("c2s_interfaces = { %s }", luaQuote(s.Host))
	p("s2s_ports = { }")
	p("component_ports = { }")
	p("http_ports = { }")
	p("https_ports = { }")
	if s.DirectTLSPort != 0 {
		p("c2s_direct_tls_ports = { %d }", s.DirectTLSPort)
	} else {
		p("c2s_direct_tls_ports = { }")
	}
	p("legacy_ssl_ports = { }")
	p(`modules_disabled = { "s2s"; "offline"; "http"; "bosh"; "websocket" }`)
	p(`modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "pep"; "private"; "admin_shell"; "smacks" }`)
	// XEP-0198: a lost stream stays resumable for ResumeWindow (600 s by
	// default), so that tests can outlast it.
	p("smacks_hibernation_time = %d", int(ResumeWindow/time.Second))
	if s.opts.PlainPasswords {
		p(`authentication = "internal_plain"`)
	} else {
		p(`authentication = "internal_hashed"`)
	}
	if s.opts.PasswordHash != "" {
		p("password_hash = %s", luaQuote(s.opts.PasswordHash))
	}
	p("c2s_require_encryption = true")
	if s.opts.ScramOnly {
		p(`disable_sasl_mechanisms = { "PLAIN" }`)
	}
	p("limits = { }")
	// Large and hostile items (up to 1 MiB payloads) are accepted.
	p("c2s_stanza_size_limit = %d", MaxStanzaBytes)
	p(`storage = "sql"`)
	p(`sql = { driver = "SQLite3"; database = "prosody.sqlite" }`)
	p("pep_max_items = 20000")
	p("certificates = %s", luaQuote(s.Dir))
	p("ssl = { certificate = %s; key = %s }", luaQuote(s.certs.Cert), luaQuote(s.certs.Key))
	admins := make([]string, len(s.opts.Admins))
	for i, a := range s.opts.Admins {
		admins[i] = luaQuote(a)
	}
	p("admins = { %s }", strings.Join(admins, "; "))
	p("VirtualHost %s", luaQuote(s.Domain))
	p("Component %s %s", luaQuote(s.PubSub), luaQuote("pubsub"))
	p("    pubsub_max_items = 20000")
	p("    expose_publisher = true")
	return b.String()
}

// luaQuote is s as a Lua string literal.
func luaQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)
	return `"` + r.Replace(s) + `"`
}

// createAccounts registers opts.Accounts.
func (s *XMPPServer) createAccounts(ctx context.Context) error {
	for user, password := range s.opts.Accounts {
		if err := s.Register(ctx, user, password); err != nil {
			return err
		}
	}
	return nil
}

// Register creates the account user@Domain with password on the running
// server; on an existing account it sets the password. Prosody: the admin
// shell (prosodyctl shell with the private configuration: user:create,
// user:password), which goes through the server's own storage connection
// (no SQLite lock contention with a busy server); ejabberd: mod_http_api on
// loopback (register, change_password). Passwords travel in a process
// argument or a loopback HTTP body: test credentials only.
func (s *XMPPServer) Register(ctx context.Context, user, password string) error {
	if user == "" || strings.ContainsAny(user, "@/ \t\n\"'\\") || password == "" {
		return fmt.Errorf("register %q: invalid user name or empty password", user)
	}
	if s.Kind == KindEjabberd {
		return s.ejabberdRegister(ctx, user, password)
	}
	jid := luaQuote(user + "@" + s.Domain)
	out, err := s.prosodyctl(ctx, "shell", "user:create("+jid+", "+luaQuote(password)+")")
	if err != nil && strings.Contains(out, "User exists") {
		out, err = s.prosodyctl(ctx, "shell", "user:password("+jid+", "+luaQuote(password)+")")
	}
	if err != nil {
		return fmt.Errorf("register %s@%s: %w: %s", user, s.Domain, err, out)
	}
	return nil
}

// prosodyctl runs prosodyctl with the private configuration and returns its
// combined output.
func (s *XMPPServer) prosodyctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "prosodyctl", append([]string{"--config", s.cfgPath}, args...)...)
	cmd.Dir = s.Dir
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// Shell runs one command of Prosody's admin shell (e.g. `c2s:show()`) and
// returns its output. It fails on ejabberd.
func (s *XMPPServer) Shell(ctx context.Context, command string) (string, error) {
	if s.Kind != KindProsody {
		return "", fmt.Errorf("admin shell: %s has none (use API)", s.Kind)
	}
	out, err := s.prosodyctl(ctx, "shell", command)
	if err != nil {
		return out, fmt.Errorf("prosody shell %q: %w: %s", command, err, out)
	}
	return out, nil
}

var closedCount = regexp.MustCompile(`Total: (\d+) sessions? closed`)

// CloseStream makes the server itself close the streams of jid (a bare
// JID: every session of the account; a full JID: that session), so that the
// client reads the server's (encrypted) stream end, which the Proxy cannot
// forge after STARTTLS. Prosody: admin shell c2s:close; the client reads
// </stream:stream> without a stream error. ejabberd 23.01: mod_http_api
// kick_user (bare JID) or kick_session (full JID); the client reads
// <stream:error> with <policy-violation/> (kick_user) or <conflict/>
// (kick_session), then </stream:stream>. It fails when no session matched.
func (s *XMPPServer) CloseStream(ctx context.Context, jid string) error {
	if s.Kind == KindEjabberd {
		return s.ejabberdKick(ctx, jid)
	}
	out, err := s.Shell(ctx, "c2s:close("+luaQuote(jid)+")")
	if err != nil {
		return fmt.Errorf("close stream of %s: %w", jid, err)
	}
	m := closedCount.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("close stream of %s: unexpected shell output %q", jid, out)
	}
	if m[1] == "0" {
		return fmt.Errorf("close stream of %s: no session", jid)
	}
	return nil
}

// Stop kills the server and every process it started, and removes Dir
// (logs in LogDir stay). It is safe on a nil server and idempotent.
func (s *XMPPServer) Stop() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	if s.proc != nil {
		// The data is thrown away: no need for a clean shutdown (which
		// takes Prosody about 1 s). Both servers write their logs unbuffered.
		s.proc.stop(0)
		s.proc = nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove %s directory: %w", s.Kind, err)
	}
	return nil
}

// Restart shuts the server down cleanly (clients see the server's own
// shutdown) and starts it again on the same port with the same data, so
// accounts and pubsub items survive.
func (s *XMPPServer) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("restart %s: server is stopped", s.Kind)
	}
	if s.proc != nil {
		s.proc.stop(20 * time.Second)
		s.proc = nil
	}
	if err := s.launch(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}
