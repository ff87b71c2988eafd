package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"example.org/backend/core/config"
)

// TestConfigReferenceHasProfileParams checks that the reference documents
// the per-profile parameters of the core, the pubsub cache and the
// first-party microblog plugin, each in its category's table.
func TestConfigReferenceHasProfileParams(t *testing.T) {
	var b bytes.Buffer
	if err := writeConfigReference(&b); err != nil {
		t.Fatal(err)
	}
	ref := b.String()
	for _, want := range []string{
		"### `cache` (declared by pubsubcache)",
		"| `cache.item_limit` | int | `10000` | >= 1 | no |",
		"### `connection` (declared by core)",
		"| `connection.port` | int | `0` | 0..65535 | yes |",
		"| `connection.password` | secret | (none) |",
		"### `microblog` (declared by microblog)",
		"| `microblog.keep_xhtml` | bool | `true` |",
	} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	var again bytes.Buffer
	if err := writeConfigReference(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != ref {
		t.Error("two renderings of the reference differ")
	}
}

// TestConfigShowRoundTrip: `config show` prints TOML the daemon accepts,
// holding the same configuration; -o json is one object with every key.
func TestConfigShowRoundTrip(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "in.toml")
	os.WriteFile(src, []byte("[log]\nlevel = \"debug\"\n[plugins]\ndirs = [\"/opt/a\", \"/opt/b\"]\n[params]\n\"cache.item_limit\" = 5000\n\"cache.analysers\" = [\"xep-0277\"]\n"), 0o600)
	e.vars = append(e.vars, "BACKEND_API_TCP_ADDRESS=127.0.0.1:7777")
	out := mustCLI(t, e, "config", "show", "--config", src)
	var tree map[string]any
	if _, err := toml.Decode(out, &tree); err != nil {
		t.Fatalf("config show is not TOML: %v\n%s", err, out)
	}
	if strings.Contains(out, "[]string") || strings.Contains(out, "(nil)") {
		t.Errorf("Go syntax in config show:\n%s", out)
	}
	shown := filepath.Join(e.dir, "shown.toml")
	os.WriteFile(shown, []byte(out), 0o600)
	want, err := config.Load(config.Overrides{File: src}, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(config.Overrides{File: shown}, e.lookup)
	if err != nil {
		t.Fatalf("the daemon refuses what config show printed: %v\n%s", err, out)
	}
	want.File, got.File = "", ""
	for _, c := range []*config.Config{&want, &got} {
		// [] in the file, absent in the source.
		if len(c.PluginPins) == 0 {
			c.PluginPins = nil
		}
		if len(c.APIAllowedOrigins) == 0 {
			c.APIAllowedOrigins = nil
		}
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	m := decode(t, mustCLI(t, e, "config", "show", "--config", src, "-o", "json"))
	if m["log.level"] != "debug" || m["api.tcp_address"] != "127.0.0.1:7777" || m["file"] != src || fmt.Sprint(m["plugins.pins"]) != "[]" ||
		fmt.Sprint(m["params"]) != "map[cache.analysers:[\"xep-0277\"] cache.item_limit:5000]" {
		t.Errorf("config show -o json: %v", m)
	}
	for _, k := range config.Keys {
		if _, ok := m[k.Name]; !ok {
			t.Errorf("config show -o json lacks %s", k.Name)
		}
	}
}

func TestConfigReferenceJSON(t *testing.T) {
	e := newEnv(t)
	out := mustCLI(t, e, "config", "reference", "-o", "json")
	var ref struct {
		Keys   []map[string]any `json:"keys"`
		Params []map[string]any `json:"params"`
	}
	if err := json.Unmarshal([]byte(out), &ref); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(ref.Keys) != len(config.Keys) || len(ref.Params) == 0 {
		t.Fatalf("reference: %d keys, %d params", len(ref.Keys), len(ref.Params))
	}
	if k := jsonKeys(ref.Keys[0]); k != "default,env,help,name,type" {
		t.Errorf("key fields: %s", k)
	}
	found := false
	for _, p := range ref.Params {
		if k := jsonKeys(p); k != "bounds,default,help,key,needs_reconnect,owner,secret,type" {
			t.Errorf("param fields: %s", k)
		}
		if p["key"] == "connection.port" {
			found = p["default"] == 0.0 && p["bounds"] == "0..65535" && p["owner"] == "core" && p["needs_reconnect"] == true
		}
		if p["secret"] == true && p["default"] != nil {
			t.Errorf("a secret's default shows: %v", p)
		}
	}
	if !found {
		t.Errorf("connection.port not right in %s", out)
	}
}
