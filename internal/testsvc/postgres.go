// Package testsvc starts real services (PostgreSQL, XMPP servers) privately
// on loopback for tests, benchmarks and development tools.
//
// Each service is meant to be started once per test package (from TestMain)
// and shared by the tests of that package.
package testsvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// ErrNotInstalled reports that a service's binaries are not on this machine.
var ErrNotInstalled = errors.New("service not installed")

// pgBinDirs are the places searched for PostgreSQL binaries, preferred first.
var pgBinDirs = []string{"/usr/lib/postgresql/15/bin"}

// Postgres is a private PostgreSQL cluster listening on 127.0.0.1, with
// trust authentication for the superuser "postgres".
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the cluster: data directory, unix socket and log.
	Dir string

	cmd     *exec.Cmd
	done    chan struct{} // closed when the postmaster exited
	admin   *sql.DB
	mu      sync.Mutex
	names   map[string]int
	stopped bool
}

// StartPostgres initialises and starts a private PostgreSQL cluster in a new
// directory under /tmp (reachable by the postgres user, with a short socket
// path), on a free loopback port. Stop it with Stop.
//
// When running as root, initdb and postgres run as the "postgres" system
// user (PostgreSQL refuses to run as root). The error wraps ErrNotInstalled
// when no PostgreSQL binaries are found.
func StartPostgres(ctx context.Context) (*Postgres, error) {
	bin, err := findPostgresBin()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	removeStaleClusters()
	// Short path: the unix socket lives here and must stay below 108 bytes.
	dir, err := os.MkdirTemp("/tmp", pgDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create postgres directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown postgres directory: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = pgEnv()
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 10))
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := startPostmaster(ctx, bin, dir, data, cred)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// startPostmaster starts postgres on a free port and waits until it accepts
// connections. The free port is picked before the start, hence the retries
// of the caller when another process takes it in between.
func startPostmaster(ctx context.Context, bin, dir, data string, cred *syscall.Credential) (*Postgres, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create postgres log: %w", err)
	}
	defer logf.Close()
	if cred != nil {
		_ = os.Chown(logPath, int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-p", strconv.Itoa(port),
		"-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		// A throw-away cluster: durability is not wanted, speed is.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Env = pgEnv()
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Fast shutdown if the test process dies without calling Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	p := &Postgres{Port: port, Dir: dir, cmd: cmd, done: make(chan struct{}), names: map[string]int{}}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	admin, err := sql.Open("pgx", p.DSN("postgres"))
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("open postgres admin connection: %w", err)
	}
	p.admin = admin
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = admin.PingContext(pctx)
		cancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			p.kill()
			return nil, fmt.Errorf("wait for postgres: %w", ctx.Err())
		case <-p.done:
			admin.Close()
			return nil, fmt.Errorf("postgres exited at start-up: %s", ReadTail(logPath, 10))
		case <-deadline.C:
			p.kill()
			return nil, fmt.Errorf("postgres not ready after 30s: %w: %s", err, ReadTail(logPath, 10))
		case <-tick.C:
		}
	}
}

// pgDirPrefix names the cluster directories under /tmp.
const pgDirPrefix = "testsvc-pg-"

// removeStaleClusters removes cluster directories left by test processes
// that were killed (their postmaster stopped with them, see Pdeathsig):
// older than ten minutes, with no running postmaster.
func removeStaleClusters() {
	dirs, _ := filepath.Glob(filepath.Join("/tmp", pgDirPrefix+"*"))
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil || time.Since(st.ModTime()) < 10*time.Minute {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// DSN returns the URL of database db on the cluster (superuser, trust auth).
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a fresh, empty database whose name is derived from
// name (e.g. a test name) and made unique, and returns its DSN.
func (p *Postgres) NewDatabase(ctx context.Context, name string) (string, error) {
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(name), "_"), "_")
	if base == "" || base[0] >= '0' && base[0] <= '9' {
		base = "db_" + base
	}
	if len(base) > 50 {
		base = base[:50]
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return "", errors.New("postgres is stopped")
	}
	p.names[base]++
	db := fmt.Sprintf("%s_%d", base, p.names[base])
	p.mu.Unlock()
	if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE "`+db+`" TEMPLATE template0`); err != nil {
		return "", fmt.Errorf("create database %s: %w", db, err)
	}
	return p.DSN(db), nil
}

// Stop shuts the cluster down (fast shutdown, then kill) and removes its
// directory. It is safe on a nil *Postgres and idempotent.
func (p *Postgres) Stop() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.mu.Unlock()
	if p.admin != nil {
		p.admin.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("remove postgres directory: %w", err)
	}
	return nil
}

// kill stops the postmaster immediately and waits for it.
func (p *Postgres) kill() {
	if p.admin != nil {
		p.admin.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// RequireOrSkip handles the error of starting a shared service in a test:
// nil lets the test go on. Under CI=true any error fails the test; otherwise
// a missing installation (ErrNotInstalled) skips it and any other error
// fails it, since a service that is installed but does not start is a bug
// to see, not to hide.
func RequireOrSkip(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("required service unavailable (CI=true): %v", err)
	}
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("service unavailable: %v", err)
	}
	t.Fatalf("service failed to start: %v", err)
}

// findPostgresBin returns the directory holding initdb and postgres:
// $TESTSVC_PG_BIN, PostgreSQL 15, then the newest other installed version.
func findPostgresBin() (string, error) {
	dirs := append([]string{}, pgBinDirs...)
	if env := os.Getenv("TESTSVC_PG_BIN"); env != "" {
		dirs = append([]string{env}, dirs...)
	}
	others, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(others)))
	dirs = append(dirs, others...)
	for _, d := range dirs {
		if st, err := os.Stat(filepath.Join(d, "initdb")); err == nil && !st.IsDir() {
			if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("postgresql: no initdb/postgres in %s (apt-get install postgresql): %w",
		strings.Join(dirs, ", "), ErrNotInstalled)
}

// postgresCredential returns the credential to run PostgreSQL with: the
// postgres system user when running as root, nil (the current user) otherwise.
func postgresCredential() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("postgresql: look up user postgres (needed when running as root): %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("postgresql: uid of postgres: %w", err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("postgresql: gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, uid, gid, nil
}

// pgEnv is a minimal environment for PostgreSQL processes.
func pgEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 at the time of
// the call: all are held open until every one is picked (ports picked one
// after the other may be the same, the first closed before the next
// pick: a server then got one port for two services).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ReadTail returns the last n lines of a file, for error messages.
func ReadTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
