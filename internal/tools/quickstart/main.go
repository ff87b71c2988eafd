// Command quickstart runs the daemon's main job on a fresh machine (the
// first command of README.md, through scripts/run.sh): it brings up a
// private Prosody on loopback with a demo account (or uses the account
// given with --jid), starts `backend serve` on the embedded SQLite, creates
// and connects the profile, publishes a few blog posts, syncs them into the
// cache and prints what to type next. It stops everything on Ctrl-C (or at
// once with --once).
//
// It drives the real CLI (the --backend binary) for every step, so what it
// does is what a user would type.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"example.org/backend/internal/testsvc"
)

// BlogNode is the XEP-0277 node the demo posts go to.
const BlogNode = "urn:xmpp:microblog:0"

type options struct {
	backend     string
	dataDir     string
	socket      string
	logFile     string
	profile     string
	xmppPort    int
	jid         string
	passwordEnv string
	host        string
	port        int
	caFile      string
	once        bool
}

func main() {
	var o options
	flag.StringVar(&o.backend, "backend", "bin/backend", "the backend binary")
	flag.StringVar(&o.dataDir, "data-dir", "", "the daemon's data directory (default: the daemon's, $XDG_DATA_HOME/backend)")
	flag.StringVar(&o.socket, "socket", "", "the daemon's API socket (default: the daemon's, $XDG_RUNTIME_DIR/backend.sock)")
	flag.StringVar(&o.logFile, "log", "bin/daemon.log", "where the daemon's log goes")
	flag.StringVar(&o.profile, "profile", "demo", "the profile to create or update")
	flag.IntVar(&o.xmppPort, "xmpp-port", 0, "c2s port of the private Prosody (0: a free port)")
	flag.StringVar(&o.jid, "jid", os.Getenv("BACKEND_DEMO_JID"), "use this XMPP account instead of a private Prosody ($BACKEND_DEMO_JID)")
	flag.StringVar(&o.passwordEnv, "password-env", "BACKEND_DEMO_PASSWORD", "environment variable holding the password of --jid")
	flag.StringVar(&o.host, "host", "", "server host of --jid (default: discovered from the JID's domain: DNS SRV records, then the domain)")
	flag.IntVar(&o.port, "port", 0, "server port of --jid (default: discovered; 5222 with --host)")
	flag.StringVar(&o.caFile, "ca-file", "", "PEM file of the CA (or self-signed certificate) of --jid's server (default: the system's CAs)")
	flag.BoolVar(&o.once, "once", false, "stop everything once the demo is set up (for scripts and CI)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "quickstart: unexpected argument %q (see scripts/run.sh -h)\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func say(format string, a ...any) { fmt.Fprintf(os.Stderr, "== "+format+"\n", a...) }

func run(ctx context.Context, o options) error {
	if _, err := os.Stat(o.backend); err != nil {
		return fmt.Errorf("no backend binary at %s: build it with `go build -tags sqlite_fts5 -o bin/backend ./cmd/backend` (scripts/run.sh does)", o.backend)
	}
	// The XMPP account: the user's, or a demo one on a private Prosody.
	acct := account{jid: o.jid, host: o.host, port: o.port, caFile: o.caFile}
	if o.jid != "" {
		acct.password = os.Getenv(o.passwordEnv)
		if acct.password == "" {
			return fmt.Errorf("--jid %s needs its password in $%s (export %s=…)", o.jid, o.passwordEnv, o.passwordEnv)
		}
		say("using your account %s (nothing installed)", o.jid)
	} else {
		srv, err := privateProsody(ctx, o.xmppPort)
		if err != nil {
			return err
		}
		defer srv.Stop()
		acct = account{jid: "demo@" + srv.Domain, password: srv.DemoPassword, host: srv.Host, port: srv.Port, caFile: srv.CAFile}
	}

	// The daemon.
	d, err := startDaemon(ctx, o)
	if err != nil {
		return err
	}
	defer d.stop()
	cli := d.cli
	if err := setupProfile(ctx, cli, o.profile, acct); err != nil {
		return err
	}
	say("connecting profile %s (%s)", o.profile, acct.jid)
	if _, err := cli(ctx, nil, "profile", "connect", o.profile); err != nil {
		return err
	}
	say("publishing %d blog posts to %s", len(demoPosts), BlogNode)
	if err := publishDemo(ctx, cli, o.profile); err != nil {
		return err
	}
	say("syncing the blog node into the cache")
	if err := d.cliTo(ctx, os.Stderr, "cache", "sync", "-p", o.profile, "-n", BlogNode, "--wait"); err != nil {
		return err
	}
	printNext(o)
	if o.once {
		say("--once: stopping")
		return nil
	}
	<-ctx.Done()
	say("stopping the daemon")
	return nil
}

type account struct {
	jid, password, host string
	port                int
	caFile              string
}

// demoServer is a private Prosody with a demo account.
type demoServer struct {
	*testsvc.XMPPServer
	DemoPassword string
}

// privateProsody starts Prosody on loopback, installing it first when it
// is missing and this process may (root with apt-get).
func privateProsody(ctx context.Context, port int) (*demoServer, error) {
	pw := randomPassword()
	start := func() (*testsvc.XMPPServer, error) {
		return testsvc.StartProsody(ctx, testsvc.XMPPOptions{Accounts: map[string]string{"demo": pw}, Port: port})
	}
	srv, err := start()
	if errors.Is(err, testsvc.ErrNotInstalled) {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("%v\nInstall it (sudo apt-get install -y prosody lua-dbi-sqlite3) and run again, or use your own account: scripts/run.sh --jid you@example.org (password in $BACKEND_DEMO_PASSWORD)", err)
		}
		if _, lerr := exec.LookPath("apt-get"); lerr != nil {
			return nil, fmt.Errorf("%v\nInstall Prosody 0.12 with your package manager, or use your own account: scripts/run.sh --jid you@example.org (password in $BACKEND_DEMO_PASSWORD)", err)
		}
		say("installing prosody and lua-dbi-sqlite3 (apt-get)")
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "prosody", "lua-dbi-sqlite3")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if ierr := cmd.Run(); ierr != nil {
			return nil, fmt.Errorf("apt-get install prosody lua-dbi-sqlite3: %w (install it by hand, or use --jid)", ierr)
		}
		srv, err = start()
	}
	if err != nil {
		return nil, fmt.Errorf("start a private Prosody: %w", err)
	}
	say("private Prosody on %s:%d (account demo@%s; stopped with this script)", srv.Host, srv.Port, srv.Domain)
	return &demoServer{XMPPServer: srv, DemoPassword: pw}, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// daemon is a running `backend serve`.
type daemon struct {
	o      options
	cmd    *exec.Cmd
	exited chan struct{}
}

func (d *daemon) clientArgs(args []string) []string {
	if d.o.socket != "" {
		return append([]string{"--socket", d.o.socket}, args...)
	}
	return args
}

// cli runs a client command; its output is returned, its failure is an
// error quoting what it said.
func (d *daemon) cli(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.o.backend, d.clientArgs(args)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("backend %s: %s", strings.Join(args, " "), strings.TrimSpace(errb.String()+" "+out.String()))
	}
	return out.Bytes(), nil
}

// cliTo runs a client command with its output on w (progress bars).
func (d *daemon) cliTo(ctx context.Context, w io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, d.o.backend, d.clientArgs(args)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("backend %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func startDaemon(ctx context.Context, o options) (*daemon, error) {
	args := []string{"serve"}
	if o.dataDir != "" {
		args = append(args, "--data-dir", o.dataDir)
	}
	if o.socket != "" {
		args = append(args, "--socket", o.socket)
	}
	if err := os.MkdirAll(filepath.Dir(o.logFile), 0o755); err != nil {
		return nil, fmt.Errorf("create the log's directory: %w", err)
	}
	logf, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the daemon's log: %w", err)
	}
	cmd := exec.Command(o.backend, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s serve: %w", o.backend, err)
	}
	d := &daemon{o: o, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(d.exited) }()
	say("starting the daemon (log: %s)", o.logFile)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := d.cli(ctx, nil, "status"); err == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("the daemon exited at start-up:\n%s", testsvc.ReadTail(o.logFile, 5))
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("the daemon did not answer within 90 s; its log:\n%s", testsvc.ReadTail(o.logFile, 10))
		}
	}
}

// stop ends the daemon with SIGTERM (SIGKILL after 15 s).
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// setupProfile creates the profile, or points an existing one at acct.
func setupProfile(ctx context.Context, cli func(context.Context, []byte, ...string) ([]byte, error), name string, acct account) error {
	out, err := cli(ctx, nil, "profile", "list", "-o", "json")
	if err != nil {
		return err
	}
	var list struct {
		Profiles []struct {
			Name string `json:"name"`
		} `json:"profiles"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return fmt.Errorf("profile list: %w", err)
	}
	exists := false
	for _, p := range list.Profiles {
		exists = exists || p.Name == name
	}
	// Port 0 with no host: the server is discovered from the JID's domain.
	settings := map[string]string{"connection.host": acct.host, "connection.ca_file": acct.caFile, "connection.port": "0"}
	if acct.port != 0 {
		settings["connection.port"] = strconv.Itoa(acct.port)
	}
	if !exists {
		say("creating profile %s", name)
		os.Setenv("BACKEND_QUICKSTART_PW", acct.password)
		defer os.Unsetenv("BACKEND_QUICKSTART_PW")
		if _, err := cli(ctx, nil, "profile", "create", name, "--jid", acct.jid, "--password-env", "BACKEND_QUICKSTART_PW"); err != nil {
			return err
		}
	} else {
		say("updating profile %s", name)
		if _, err := cli(ctx, nil, "profile", "disconnect", name); err != nil && !strings.Contains(err.Error(), "not connected") {
			return err
		}
		if _, err := cli(ctx, nil, "profile", "set", name, "connection.jid", acct.jid); err != nil {
			return err
		}
		if _, err := cli(ctx, []byte(acct.password), "profile", "set", name, "connection.password", "-"); err != nil {
			return err
		}
	}
	for _, k := range []string{"connection.host", "connection.port", "connection.ca_file"} {
		if _, err := cli(ctx, nil, "profile", "set", name, k, settings[k]); err != nil {
			return err
		}
	}
	return nil
}

// demoPosts are the blog posts published by the demo.
var demoPosts = []struct{ id, title, content, tags, published string }{
	{"welcome", "Welcome to the backend", "This post was published by the quick start and read back from the cache.", "demo,xmpp", "2026-01-01T09:00:00Z"},
	{"cache", "How the cache works", "Whole nodes are synced, then kept fresh by notifications: reads come from SQL.", "cache,xmpp", "2026-01-02T09:00:00Z"},
	{"search", "Searching posts", "Filters on parsed fields and full-text search, for example the word lighthouse.", "search", "2026-01-03T09:00:00Z"},
	{"plugins", "Plugins out of process", "The microblog parser runs as a supervised plugin process.", "plugins,go", "2026-01-04T09:00:00Z"},
	{"offline", "Reading offline", "While the profile is offline, cached nodes are served with stale: true.", "cache", "2026-01-05T09:00:00Z"},
}

func atomEntry(id, title, content, tags, published string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<entry xmlns='http://www.w3.org/2005/Atom'><title>%s</title><id>urn:demo:%s</id>", title, id)
	fmt.Fprintf(&b, "<published>%s</published><updated>%s</updated><content>%s</content>", published, published, content)
	for _, t := range strings.Split(tags, ",") {
		fmt.Fprintf(&b, "<category term='%s'/>", t)
	}
	b.WriteString("</entry>")
	return []byte(b.String())
}

func publishDemo(ctx context.Context, cli func(context.Context, []byte, ...string) ([]byte, error), profile string) error {
	// Every post kept (PEP nodes keep one item by default); the node may
	// exist from an earlier run.
	if _, err := cli(ctx, nil, "pubsub", "node", "create", "-p", profile, "-n", BlogNode, "--option", "pubsub#max_items=max"); err != nil &&
		!strings.Contains(err.Error(), "conflict") {
		return err
	}
	for _, p := range demoPosts {
		if _, err := cli(ctx, atomEntry(p.id, p.title, p.content, p.tags, p.published), "pubsub", "publish", "-p", profile, "-n", BlogNode, "-i", p.id); err != nil {
			return err
		}
	}
	return nil
}

func printNext(o options) {
	b := o.backend
	if o.socket != "" {
		b += " --socket " + o.socket
	}
	p := o.profile
	fmt.Printf(`
The daemon runs (log: %[3]s) with profile %[2]s connected and its blog cached.
In another terminal, try:

  %[1]s pubsub items -p %[2]s -n %[4]s -o json     # "from_cache":true
  %[1]s cache search -p %[2]s -F 'tags overlap ["cache"]' -o json
  %[1]s cache search -p %[2]s -f lighthouse
  %[1]s cache status -p %[2]s
  %[1]s events -o json                              # live events; Ctrl-C to stop
  %[1]s status

README.md ("Walkthrough") goes on from here. Ctrl-C here stops the daemon%[5]s.
`, b, p, o.logFile, BlogNode, map[bool]string{true: "", false: " and the private Prosody"}[o.jid != ""])
}
