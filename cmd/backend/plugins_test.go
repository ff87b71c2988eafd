package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
)

type pluginsList struct {
	Plugins []pluginJSON `json:"plugins"`
}

func (e *env) plugins(t *testing.T) pluginsList {
	t.Helper()
	out, stderr, code := e.cli(t, "plugins", "list", "-o", "json")
	if code != exitOK {
		t.Fatalf("plugins list: exit %d %s", code, stderr)
	}
	var l pluginsList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	return l
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	// Generous: it only bounds a hang (a loaded CI machine can be slow).
	deadline := time.Now().Add(2 * time.Minute)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(pid int64) bool { return syscall.Kill(int(pid), 0) == nil }

// The first-party microblog plugin runs out of process through the daemon's
// re-exec path: listed with its pid and analyser, its parameter declared
// for every profile, restarted after a crash, and gone with the daemon.
func TestFirstPartyPluginThroughReexec(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "PW=x")
	cmd, exited, logs, _ := e.serve(t)
	var first pluginJSON
	waitFor(t, "microblog running", func() bool {
		for _, p := range e.plugins(t).Plugins {
			if p.Name == "microblog" && p.State == "running" {
				first = p
				return true
			}
		}
		return false
	})
	if first.PID == nil || !alive(*first.PID) || strings.Join(first.Analysers, ",") != "xep-0277,xep-0277-comments" || !first.FirstParty {
		t.Fatalf("microblog = %+v", first)
	}
	// The second first-party plugin, in its own process.
	var pepPlugin pluginJSON
	waitFor(t, "pep running", func() bool {
		for _, p := range e.plugins(t).Plugins {
			if p.Name == "pep" && p.State == "running" {
				pepPlugin = p
				return true
			}
		}
		return false
	})
	if pepPlugin.PID == nil || *pepPlugin.PID == *first.PID || !alive(*pepPlugin.PID) || !pepPlugin.FirstParty ||
		strings.Join(pepPlugin.Analysers, ",") != "xep-0402,xep-0084,xep-0292,xep-0172" {
		t.Fatalf("pep = %+v", pepPlugin)
	}
	// Its parameter is declared and explained like the core's.
	if _, stderr, code := e.cli(t, "profile", "create", "p", "--jid", "p@example.org", "--password-env", "PW"); code != exitOK {
		t.Fatalf("profile create: %s", stderr)
	}
	out, _, code := e.cli(t, "profile", "get", "p", "microblog.keep_xhtml", "-o", "json")
	if code != exitOK || !strings.Contains(out, `"source":"default"`) || !strings.Contains(out, `"type":"bool"`) {
		t.Errorf("profile get microblog.keep_xhtml: %d %s", code, out)
	}
	if _, _, code := e.cli(t, "profile", "set", "p", "microblog.keep_xhtml", "maybe"); code != exitFailed {
		t.Errorf("a bad bool was accepted: exit %d", code)
	}
	if _, stderr, code := e.cli(t, "profile", "set", "p", "microblog.keep_xhtml", "false"); code != exitOK {
		t.Errorf("profile set: %s", stderr)
	}
	// A crash is noticed and the plugin restarted.
	syscall.Kill(int(*first.PID), syscall.SIGKILL)
	var second pluginJSON
	waitFor(t, "microblog restarted", func() bool {
		for _, p := range e.plugins(t).Plugins {
			if p.Name == "microblog" && p.State == "running" && p.Restarts >= 1 && p.PID != nil && *p.PID != *first.PID {
				second = p
				return true
			}
		}
		return false
	})
	// No plugin outlives the daemon.
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	waitFor(t, "the plugin process to end with the daemon", func() bool { return !alive(*second.PID) })
	if !strings.Contains(logs.String(), `"plugin":"microblog"`) {
		t.Errorf("no plugin lines in the daemon's log:\n%s", logs)
	}
}

func TestPluginsRestartUnknown(t *testing.T) {
	e := newEnv(t)
	e.serve(t)
	out, _, code := e.cli(t, "plugins", "restart", "nope", "-o", "json")
	if code != exitFailed || !strings.Contains(out, `"not_found"`) {
		t.Errorf("exit %d, %s", code, out)
	}
}
