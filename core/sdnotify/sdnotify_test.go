package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen is a fake systemd notification socket.
func listen(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestFromEnvAndMessages(t *testing.T) {
	path, c := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := FromEnv()
	if err != nil || n == nil {
		t.Fatalf("FromEnv: %v %v", n, err)
	}
	defer n.Close()
	if n.Watchdog != 200*time.Millisecond {
		t.Errorf("watchdog = %v", n.Watchdog)
	}
	if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Errorf("NOTIFY_SOCKET still set (%q): plugin processes would inherit it", v)
	}
	if err := n.Ready("serving"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); !strings.HasPrefix(got, "READY=1\nSTATUS=serving\nMAINPID=") {
		t.Errorf("ready = %q", got)
	}
	// Pings only while healthy.
	stop := make(chan struct{})
	done := make(chan struct{})
	healthy := make(chan error, 10)
	healthy <- nil
	healthy <- errors.New("database down")
	healthy <- nil
	failures := make(chan error, 10)
	go func() {
		defer close(done)
		n.RunWatchdog(stop, func() error {
			select {
			case err := <-healthy:
				return err
			default:
				return nil
			}
		}, func(err error) { failures <- err })
	}()
	if got := read(t, c); got != "WATCHDOG=1" {
		t.Errorf("ping = %q", got)
	}
	if got := read(t, c); got != "WATCHDOG=1" {
		t.Errorf("ping = %q", got)
	}
	close(stop)
	<-done
	select {
	case err := <-failures:
		if err.Error() != "database down" {
			t.Errorf("failure = %v", err)
		}
	default:
		t.Error("an unhealthy check was not reported")
	}
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	for got := read(t, c); got != "STOPPING=1\nSTATUS=shutting down"; got = read(t, c) {
		if got != "WATCHDOG=1" {
			t.Fatalf("stopping = %q", got)
		}
	}
}

func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if n != nil || err != nil {
		t.Fatalf("FromEnv without socket: %v %v", n, err)
	}
	// A nil notifier is a no-op.
	if n.Ready("x") != nil || n.Stopping() != nil || n.Close() != nil {
		t.Error("nil notifier failed")
	}
	n.RunWatchdog(nil, nil, nil) // returns at once
	// A watchdog meant for another process is ignored.
	path, _ := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1")
	n, err = FromEnv()
	if err != nil || n.Watchdog != 0 {
		t.Errorf("watchdog of another pid: %v %v", n, err)
	}
	n.Close()
	if _, err := Dial("relative/path"); err == nil {
		t.Error("relative socket path accepted")
	}
}
