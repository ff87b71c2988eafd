package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBackupRestoreCLI: a backup taken while the daemon runs, restored
// after changes with the daemon stopped, brings the profiles, their
// parameters and their secret back; restore is refused while the daemon
// runs; a key file that does not match the backup's secrets is reported;
// PostgreSQL gets the pg_dump / pg_restore command.
func TestBackupRestoreCLI(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "PW=alice-secret")
	cmd, exited, _, _ := e.serve(t)
	mustCLI(t, e, "profile", "create", "alice", "--jid", "alice@example.org", "--password-env", "PW", "--port", "5299")
	file := filepath.Join(e.dir, "copy.db")
	out := mustCLI(t, e, "backup", file, "-o", "json")
	m := decode(t, out)
	if jsonKeys(m) != "bytes,items,path,profiles,source,version" || m["profiles"] != 1.0 || m["path"] != file {
		t.Errorf("backup -o json: %s", out)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	if _, errs, code := e.cli(t, "backup", file); code != exitFailed || !strings.Contains(errs, "exists") {
		t.Errorf("backup onto an existing file: %d %s", code, errs)
	}
	if _, errs, code := e.cli(t, "restore", file); code != exitFailed || !strings.Contains(errs, "stop it first") {
		t.Errorf("restore with the daemon running: %d %s", code, errs)
	}
	// Changes after the backup.
	mustCLI(t, e, "profile", "delete", "alice")
	mustCLI(t, e, "profile", "create", "bob", "--jid", "bob@example.org", "--password-env", "PW")
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited

	out = mustCLI(t, e, "restore", file)
	if !strings.Contains(out, "restored "+file) || !strings.Contains(out, "the replaced database is kept in ") || strings.Contains(out, "warning") {
		t.Errorf("restore: %s", out)
	}
	cmd, exited, _, _ = e.serve(t)
	list := mustCLI(t, e, "profile", "list", "-o", "json")
	if !strings.Contains(list, `"name":"alice"`) || strings.Contains(list, `"bob"`) {
		t.Errorf("profiles after restore: %s", list)
	}
	port := decode(t, mustCLI(t, e, "profile", "get", "alice", "connection.port", "-o", "json"))
	pw := decode(t, mustCLI(t, e, "profile", "get", "alice", "connection.password", "-o", "json"))
	if port["value"] != 5299.0 || pw["value"] != "********" {
		t.Errorf("parameters after restore: port %v, password %v", port, pw)
	}

	// Restored under a new key file: the secret is reported.
	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	os.Remove(filepath.Join(e.dir, "data", "backend", "secret.key"))
	out = mustCLI(t, e, "restore", file, "-o", "json")
	if m := decode(t, out); m["secrets"] != 1.0 || m["secrets_other_key"] != 1.0 || m["previous"] == nil {
		t.Errorf("restore under another key: %s", out)
	}
	out = mustCLI(t, e, "restore", file)
	if !strings.Contains(out, "warning: 1 of 1 stored secrets were encrypted with another key") {
		t.Errorf("no warning about the key: %s", out)
	}

	// PostgreSQL: the command to run, no password.
	e.vars = append(e.vars, "BACKEND_DATABASE_DRIVER=postgres", "BACKEND_DATABASE_DSN=postgres://backend:pw@127.0.0.1:5432/backend")
	for verb, want := range map[string]string{"backup": "pg_dump --host=127.0.0.1 --port=5432 --username=backend --format=custom",
		"restore": "pg_restore --host=127.0.0.1 --port=5432 --username=backend --clean --if-exists --dbname=backend"} {
		_, errs, code := e.cli(t, verb, file)
		if code != exitFailed || !strings.Contains(errs, want) || strings.Contains(errs, ":pw@") {
			t.Errorf("%s on PostgreSQL: %d %s", verb, code, errs)
		}
	}
}
