package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// cliIn runs one client command in-process with stdin.
func (e *env) cliIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := newApp(strings.NewReader(stdin), &out, &errb)
	a.lookup = e.lookup
	code = a.execute(args)
	return out.String(), errb.String(), code
}

// jsonKeys returns the sorted keys of a JSON object.
func jsonKeys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func decode(t testing.TB, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not one JSON object: %q: %v", out, err)
	}
	return m
}

const (
	cliPassword1 = "cli-pw-1-Xy7&unique"
	cliPassword2 = "cli-pw-2-Qr5!unique"
	cliPassword3 = "cli-pw-3-Lm2?unique"
)

const paramKeys = "bounds,default,help,key,needs_reconnect,secret,source,type,value"

func TestProfileCLI(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(filepath.Join(e.dir, "config", "backend"), 0o700)
	os.WriteFile(filepath.Join(e.dir, "config", "backend", "config.toml"), []byte("[params]\nconnection.port = 5269\n"), 0o600)
	e.vars = append(e.vars, "BACKEND_LOG_LEVEL=debug", "ALICE_PW="+cliPassword1)
	cmd, exited, logs, _ := e.serve(t)

	var outputs []string // everything the CLI printed, scanned for passwords
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		out, errs, code := e.cliIn(t, stdin, args...)
		outputs = append(outputs, out, errs)
		return out, errs, code
	}
	wantErr := func(code int, jsonCode string, args ...string) map[string]any {
		t.Helper()
		out, _, c := run("", append(args, "-o", "json")...)
		m := decode(t, out)
		errObj, _ := m["error"].(map[string]any)
		if c != code || errObj == nil || errObj["code"] != jsonCode || errObj["message"] == "" {
			t.Errorf("%v: exit %d, %s; want exit %d with code %q", args, c, out, code, jsonCode)
		}
		return errObj
	}

	// create, with each password source.
	out, errs, code := run("", "profile", "create", "alice", "--jid", "alice@example.org", "--password-env", "ALICE_PW",
		"--host", "xmpp.example.org", "--autoconnect", "-o", "json")
	if code != exitOK {
		t.Fatalf("create alice: %d %s %s", code, out, errs)
	}
	if m := decode(t, out); jsonKeys(m) != "autoconnect,jid,name,state" || m["name"] != "alice" || m["autoconnect"] != true || m["state"] != "disconnected" {
		t.Errorf("create output = %s", out)
	}
	pwFile := filepath.Join(e.dir, "bob.pw")
	os.WriteFile(pwFile, []byte(cliPassword2+"\n"), 0o600)
	if out, errs, code := run("", "profile", "create", "bob", "--jid", "bob@example.org", "--password-file", pwFile, "--port", "5223", "--no-tls-verify", "--ca-file", "ca.pem"); code != exitOK || !strings.Contains(out, "created profile bob") {
		t.Fatalf("create bob: %d %s %s", code, out, errs)
	}

	// Usage errors (exit 2), nothing created.
	for _, args := range [][]string{
		{"profile", "create", "carol", "--jid", "carol@example.org"},
		{"profile", "create", "carol", "--jid", "carol@example.org", "--password-file", pwFile, "--password-env", "ALICE_PW"},
		{"profile", "create", "carol", "--password-file", pwFile},
		{"profile", "create", "carol", "--jid", "carol@example.org", "--password-env", "NO_SUCH_VAR"},
		{"profile", "create", "carol", "--jid", "carol@example.org", "--password-file", pwFile, "--port", "x"},
		{"profile", "set", "alice", "connection.password", cliPassword3},
		{"profile", "get", "alice"},
		{"profile"},
	} {
		if _, errs, code := run("", args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errs, exitUsage)
		}
	}
	_, errs, _ = run("", "profile", "set", "alice", "connection.password", cliPassword3)
	if !strings.Contains(errs, "backend profile set alice connection.password -") {
		t.Errorf("a secret on the command line: %q", errs)
	}

	// Refused requests (exit 1), with the §9 JSON error.
	wantErr(exitFailed, "already_exists", "profile", "create", "alice", "--jid", "x@example.org", "--password-env", "ALICE_PW")
	wantErr(exitFailed, "invalid_argument", "profile", "create", "carol", "--jid", "carol@exa mple.org", "--password-env", "ALICE_PW")
	wantErr(exitFailed, "invalid_argument", "profile", "create", "ca rol", "--jid", "carol@example.org", "--password-env", "ALICE_PW")
	wantErr(exitFailed, "invalid_argument", "profile", "create", "carol", "--jid", "carol@example.org", "--password-env", "ALICE_PW", "--port", "70000")
	wantErr(exitFailed, "not_found", "profile", "show", "nobody")
	wantErr(exitFailed, "not_found", "profile", "delete", "nobody")
	wantErr(exitFailed, "not_found", "profile", "set", "nobody", "connection.port", "5222")
	if m := wantErr(exitFailed, "invalid_argument", "profile", "get", "alice", "connection.prot"); !strings.Contains(m["message"].(string), "connection.port") {
		t.Errorf("unknown key error = %v", m)
	}
	// Every type's validation through `profile set`.
	for _, tc := range [][2]string{
		{"connection.port", "1.5"}, {"connection.port", "65536"}, {"connection.port", "abc"},
		{"connection.tls_verify", "maybe"}, {"connection.autoconnect", "2"},
		{"connection.host", "bad host"}, {"connection.jid", "not a jid"}, {"connection.resource", "a\x01"},
	} {
		m := wantErr(exitFailed, "invalid_argument", "profile", "set", "alice", tc[0], tc[1])
		if msg, _ := m["message"].(string); !strings.Contains(msg, tc[0]) || !strings.Contains(msg, "accepts") {
			t.Errorf("set %s %q: message %q should name the key and what it accepts", tc[0], tc[1], msg)
		}
	}
	if out, _, _ := run("", "profile", "list", "-o", "json"); !strings.Contains(out, `"name":"alice"`) || strings.Contains(out, "carol") {
		t.Errorf("list after refusals: %s", out)
	}

	// params: every key, typed values, sources.
	out, _, code = run("", "profile", "params", "alice", "-o", "json")
	if code != exitOK {
		t.Fatalf("params: %d", code)
	}
	var ps struct{ Params []map[string]any }
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps.Params) < 8 {
		t.Fatalf("params = %s (%v)", out, err)
	}
	byKey := map[string]map[string]any{}
	for _, p := range ps.Params {
		if jsonKeys(p) != paramKeys {
			t.Errorf("param keys = %s, want %s", jsonKeys(p), paramKeys)
		}
		byKey[p["key"].(string)] = p
	}
	check := func(key string, value any, source string) {
		t.Helper()
		if p := byKey[key]; p == nil || p["value"] != value || p["source"] != source {
			t.Errorf("%s = %v", key, p)
		}
	}
	check("connection.port", float64(5269), "config")
	check("connection.password", "********", "profile")
	check("connection.host", "xmpp.example.org", "profile")
	check("connection.autoconnect", true, "profile")
	check("connection.tls_verify", true, "default")
	if p := byKey["connection.port"]; p["bounds"] != "0..65535" || p["default"] != float64(0) || p["type"] != "int" || p["needs_reconnect"] != true {
		t.Errorf("port = %v", p)
	}
	if p := byKey["connection.host"]; p["bounds"] != nil {
		t.Errorf("host bounds = %v, want null", p["bounds"])
	}
	if p := byKey["connection.password"]; p["secret"] != true || p["default"] != nil {
		t.Errorf("password = %v", p)
	}

	// set / get, and the secret through stdin.
	out, _, code = run("", "profile", "set", "alice", "connection.port", "5223", "-o", "json")
	if m := decode(t, out); code != exitOK || jsonKeys(m) != paramKeys || m["value"] != float64(5223) || m["source"] != "profile" {
		t.Errorf("set port: %d %s", code, out)
	}
	if out, _, code := run(cliPassword3+"\n", "profile", "set", "alice", "connection.password", "-"); code != exitOK || !strings.Contains(out, "********") {
		t.Errorf("set password from stdin: %d %s", code, out)
	}
	if out, _, _ := run("", "profile", "get", "bob", "connection.ca_file", "-o", "json"); !strings.Contains(out, `"value":"`+filepath.Join(mustGetwd(t), "ca.pem")+`"`) {
		t.Errorf("relative --ca-file not made absolute: %s", out)
	}
	if out, _, _ := run("", "profile", "get", "bob", "connection.tls_verify", "-o", "json"); !strings.Contains(out, `"value":false`) {
		t.Errorf("--no-tls-verify: %s", out)
	}
	out, _, _ = run("", "profile", "show", "alice", "-o", "json")
	if m := decode(t, out); jsonKeys(m) != "autoconnect,jid,name,params,session,state" || m["session"] != nil {
		t.Errorf("show = %s", out)
	}
	// Human tables.
	out, _, _ = run("", "profile", "params", "alice")
	for _, s := range []string{"KEY", "SOURCE", "connection.port", "5223", "0..65535", "TCP port", "********"} {
		if !strings.Contains(out, s) {
			t.Errorf("params table lacks %q:\n%s", s, out)
		}
	}
	if out, _, _ := run("", "profile", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "disconnected") {
		t.Errorf("list table:\n%s", out)
	}

	// delete cascades.
	if out, _, code := run("", "profile", "delete", "bob", "-o", "json"); code != exitOK || strings.TrimSpace(out) != `{"ok":true}` {
		t.Errorf("delete: %d %s", code, out)
	}
	wantErr(exitFailed, "not_found", "profile", "params", "bob")

	// Stop the daemon, then look for the passwords everywhere.
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	dataDir := filepath.Join(e.dir, "data", "backend")
	st, err := os.Stat(filepath.Join(dataDir, "secret.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret.key: %v %v", err, st)
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "backend.db*"))
	if len(files) == 0 {
		t.Fatal("no database file")
	}
	haystacks := map[string]string{"daemon logs": logs.String(), "CLI output": strings.Join(outputs, "\n")}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		haystacks[f] = string(raw)
	}
	if !strings.Contains(logs.String(), "parameter changed") {
		t.Errorf("debug logs do not show the change at all:\n%s", logs)
	}
	for where, text := range haystacks {
		for _, pw := range []string{cliPassword1, cliPassword2, cliPassword3} {
			if strings.Contains(text, pw) {
				t.Errorf("%s holds a password in clear", where)
			}
		}
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestProfileLostKeyFileCLI(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "PW="+cliPassword1)
	cmd, exited, _, _ := e.serve(t)
	if _, errs, code := e.cli(t, "profile", "create", "alice", "--jid", "alice@example.org", "--password-env", "PW", "--port", "5223"); code != exitOK {
		t.Fatal(errs)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if err := os.Remove(filepath.Join(e.dir, "data", "backend", "secret.key")); err != nil {
		t.Fatal(err)
	}
	e.serve(t)
	out, errs, code := e.cli(t, "profile", "params", "alice", "-o", "json")
	if code != exitOK {
		t.Fatalf("params after key loss: %d %s", code, errs)
	}
	var ps struct{ Params []map[string]any }
	json.Unmarshal([]byte(out), &ps)
	seen := 0
	for _, p := range ps.Params {
		switch p["key"] {
		case "connection.password":
			seen++
			if p["value"] != "********" || p["source"] != "profile" {
				t.Errorf("password after key loss: %v", p)
			}
		case "connection.port":
			seen++
			if p["value"] != float64(5223) {
				t.Errorf("port after key loss: %v", p)
			}
		}
	}
	if seen != 2 {
		t.Errorf("params after key loss: %s", out)
	}
	if _, errs, code := e.cliIn(t, cliPassword2, "profile", "set", "alice", "connection.password", "-"); code != exitOK {
		t.Errorf("setting the password again: %d %s", code, errs)
	}
}
