package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `backend version` and `--version` come from the build
// information; with a daemon, version and status name the daemon's build.
func TestVersion(t *testing.T) {
	e := newEnv(t)
	out, _, code := e.cli(t, "--version")
	if code != exitOK || !strings.HasPrefix(out, "backend version ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version: %d %q", code, out)
	}
	out, _, code = e.cli(t, "version", "-o", "json")
	m := decode(t, out)
	if code != exitOK || jsonKeys(m) != "daemon,dirty,go_version,platform,revision,vcs_time,version" || m["daemon"] != nil ||
		m["go_version"] != runtime.Version() || m["version"] == "" {
		t.Errorf("version without daemon: %d %s", code, out)
	}
	if out, _, code := e.cli(t, "version"); code != exitOK || !strings.Contains(out, "not reachable") {
		t.Errorf("version table without daemon: %d %q", code, out)
	}
	e.serve(t)
	out, _, _ = e.cli(t, "version", "-o", "json")
	m = decode(t, out)
	d, _ := m["daemon"].(map[string]any)
	st := decode(t, mustCLI(t, e, "status", "-o", "json"))
	b, _ := st["build"].(map[string]any)
	if d == nil || b == nil || d["version"] != st["version"] || b["version"] != st["version"] || b["go_version"] != runtime.Version() ||
		jsonKeys(b) != "dirty,go_version,platform,revision,vcs_time,version" {
		t.Errorf("daemon build: version %s, status %v", out, st)
	}
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(t *testing.T, e *env, args ...string) string {
	t.Helper()
	out, errs, code := e.cli(t, args...)
	if code != exitOK {
		t.Fatalf("%v: exit %d %s %s", args, code, out, errs)
	}
	return out
}
