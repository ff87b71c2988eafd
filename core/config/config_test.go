package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := Load(Overrides{}, env(map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/home/u/.local/share/backend" {
		t.Errorf("data dir = %q", c.DataDir)
	}
	if c.Socket != "/home/u/.local/share/backend/backend.sock" {
		t.Errorf("socket without XDG_RUNTIME_DIR = %q", c.Socket)
	}
	if c.LogLevel != "info" || c.LogFormat != "text" || c.DatabaseDriver != "sqlite3" {
		t.Errorf("defaults = %+v", c)
	}
	if c.APITokenFile != "/home/u/.local/share/backend/api.token" {
		t.Errorf("token file = %q", c.APITokenFile)
	}
	c, _ = Load(Overrides{}, env(map[string]string{"HOME": "/h", "XDG_RUNTIME_DIR": "/run/u", "XDG_CONFIG_HOME": t.TempDir()}))
	if c.Socket != "/run/u/backend.sock" {
		t.Errorf("socket with XDG_RUNTIME_DIR = %q", c.Socket)
	}
}

func TestLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "backend", "config.toml")
	os.MkdirAll(filepath.Dir(file), 0o700)
	os.WriteFile(file, []byte(`
data_dir = "/from/file"
[log]
level = "debug"
format = "json"
[plugins]
dirs = ["/a", "/b"]
[params]
"cache.item_limit" = 5000
cache.enabled = false
`), 0o600)
	e := map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": dir, "BACKEND_LOG_LEVEL": "warn", "BACKEND_SOCKET": "/env.sock"}
	c, err := Load(Overrides{}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/from/file" || c.LogLevel != "warn" || c.LogFormat != "json" || c.Socket != "/env.sock" {
		t.Errorf("layers = %+v", c)
	}
	if !reflect.DeepEqual(c.PluginDirs, []string{"/a", "/b"}) {
		t.Errorf("plugin dirs = %v", c.PluginDirs)
	}
	if c.Params["cache.item_limit"] != "5000" || c.Params["cache.enabled"] != "false" {
		t.Errorf("params = %v", c.Params)
	}
	c, err = Load(Overrides{DataDir: "/flag", Socket: "/flag.sock"}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/flag" || c.Socket != "/flag.sock" {
		t.Errorf("flags did not win: %+v", c)
	}
}

func TestRejects(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown key":   "colour = \"blue\"\n",
		"unknown table": "[api]\nport = 3\n",
		"bad type":      "data_dir = 3\n",
		"bad level":     "[log]\nlevel = \"loud\"\n",
		"pg no dsn":     "[database]\ndriver = \"postgres\"\n",
		"bad toml":      "data_dir = \n",
	}
	wantIn := map[string]string{
		"unknown key": `"colour"`, "unknown table": `"api.port"`, "bad type": `"data_dir"`,
		"bad level": "log.level", "pg no dsn": "database.dsn", "bad toml": "config file",
	}
	for name, body := range cases {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
		os.WriteFile(f, []byte(body), 0o600)
		_, err := Load(Overrides{File: f}, env(map[string]string{"HOME": "/h"}))
		if err == nil || !strings.Contains(err.Error(), wantIn[name]) {
			t.Errorf("%s: err = %v, want mention of %s", name, err, wantIn[name])
		}
	}
	if _, err := Load(Overrides{File: filepath.Join(dir, "missing.toml")}, env(map[string]string{"HOME": "/h"})); err == nil {
		t.Error("a missing --config file was accepted")
	}
}

func TestEveryKeyHasEnvAndHelp(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys {
		if k.Help == "" || seen[k.Name] {
			t.Errorf("key %q: missing help or duplicate", k.Name)
		}
		seen[k.Name] = true
		if !strings.HasPrefix(k.Env(), "BACKEND_") {
			t.Errorf("env of %q = %q", k.Name, k.Env())
		}
	}
}
