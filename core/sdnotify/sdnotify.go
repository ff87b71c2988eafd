// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): READY=1 once the daemon serves, WATCHDOG=1 pings while it
// is healthy, STOPPING=1 when it shuts down. Without $NOTIFY_SOCKET (not run
// by systemd, or Type=simple) every call is a no-op.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Notifier sends notifications to the service manager. Its zero value (and
// nil) sends nothing. It is safe for concurrent use.
type Notifier struct {
	mu   sync.Mutex // serialises writes on conn
	conn *net.UnixConn
	// Watchdog is the interval systemd expects pings within (WatchdogSec),
	// 0 when the watchdog is off for this process.
	Watchdog time.Duration
}

// FromEnv reads $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID, then
// removes them from the environment so that child processes (plugins) do
// not inherit them. It returns a nil Notifier when the variable is unset.
func FromEnv() (*Notifier, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	os.Unsetenv("NOTIFY_SOCKET")
	os.Unsetenv("WATCHDOG_USEC")
	os.Unsetenv("WATCHDOG_PID")
	if addr == "" {
		return nil, nil
	}
	n, err := Dial(addr)
	if err != nil {
		return nil, err
	}
	if usec != "" && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		v, err := strconv.ParseInt(usec, 10, 64)
		if err != nil || v <= 0 {
			n.Close()
			return nil, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
		}
		n.Watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Dial connects to the notification socket addr: a path, or an abstract
// socket name starting with '@'.
func Dial(addr string) (*Notifier, error) {
	if addr == "" || (addr[0] != '/' && addr[0] != '@') {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or an @abstract name", addr)
	}
	name := addr
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("connect to the systemd notification socket %s: %w", addr, err)
	}
	return &Notifier{conn: c}, nil
}

// Send sends one notification ("READY=1", "STATUS=…"; several assignments
// separated by newlines).
func (n *Notifier) Send(state string) error {
	if n == nil || n.conn == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd (%s): %w", state, err)
	}
	return nil
}

// Ready tells systemd that start-up is finished.
func (n *Notifier) Ready(status string) error {
	return n.Send("READY=1\nSTATUS=" + status + "\nMAINPID=" + strconv.Itoa(os.Getpid()))
}

// Stopping tells systemd that the daemon is shutting down.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1\nSTATUS=shutting down") }

// RunWatchdog pings systemd at half the watchdog interval, each time after
// healthy returns nil, until stop is closed; a failed check skips the
// ping (so that systemd restarts a daemon that stays unhealthy for the
// whole interval) and is reported to failed. It returns at once when the
// watchdog is off.
func (n *Notifier) RunWatchdog(stop <-chan struct{}, healthy func() error, failed func(error)) {
	if n == nil || n.Watchdog <= 0 {
		return
	}
	t := time.NewTicker(n.Watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := healthy(); err != nil {
			failed(err)
			continue
		}
		if err := n.Send("WATCHDOG=1"); err != nil {
			failed(err)
		}
	}
}

// Close closes the socket.
func (n *Notifier) Close() error {
	if n == nil || n.conn == nil {
		return nil
	}
	return n.conn.Close()
}
