package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"example.org/backend/core/analysers"
	"example.org/backend/core/config"
	"example.org/backend/core/pluginhost"
	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/microblog"
)

func firstParty() map[string]*sdk.Plugin {
	return map[string]*sdk.Plugin{"microblog": microblog.New()}
}

// TestMain lets this test binary serve first-party plugins the way the
// daemon binary does: re-executed with the hidden plugin subcommand.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == PluginSubcommand {
		if err := pluginhost.ServeBuiltin(os.Args[2], firstParty()); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const atomEntry = `<entry xmlns='http://www.w3.org/2005/Atom'><title>Hello café</title><id>urn:uuid:1</id>` +
	`<published>2026-11-27T10:00:00Z</published><updated>2026-11-27T10:00:00Z</updated>` +
	`<category term='go'/><content type='text'>Some text</content></entry>`

// The microblog plugin, re-executed from the binary, declares its analyser
// in the persisted registry and parses items; while it is down parsing
// reports ErrProviderDown (pending), and after its restart it parses again.
func TestMicroblogThroughReexec(t *testing.T) {
	d, _ := start(t, func(c *config.Config) {}, withFirstParty(firstParty()))
	reg := d.Host.Analysers
	a, ok := reg.Lookup("xep-0277")
	if !ok || a.Owner != "microblog" || !a.ToSync || a.NodePrefix != "urn:xmpp:microblog:0" || !reg.Available("xep-0277") {
		t.Fatalf("analyser = %+v %v", a, ok)
	}
	version := reg.Version()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	parse := func() ([]sdk.ParseResult, error) {
		return reg.Parse(ctx, sdk.ParseRequest{Profile: "p", Service: "a@h", Node: "urn:xmpp:microblog:0", Analyser: "xep-0277",
			Items: []sdk.Item{{ID: "1", Publisher: "a@h", Payload: []byte(atomEntry)}, {ID: "2", Payload: []byte("<not-atom/>")}}})
	}
	res, err := parse()
	if err != nil || len(res) != 2 {
		t.Fatalf("parse: %v %v", res, err)
	}
	var got map[string]any
	if err := json.Unmarshal(res[0].JSON, &got); err != nil || got["title"] != "Hello café" || res[0].Err != nil {
		t.Errorf("parsed = %s (%v, %v)", res[0].JSON, err, res[0].Err)
	}
	if res[1].Err == nil {
		t.Errorf("a malformed entry did not fail alone: %+v", res[1])
	}
	// Crash: parsing is pending, not lost, until the supervisor restarts it.
	pid := 0
	for _, p := range d.external.status() {
		pid = int(p.Pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	sawDown := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err = parse()
		if err == nil && len(res) == 2 {
			break
		}
		if errors.Is(err, analysers.ErrProviderDown) {
			sawDown = true
		} else if err != nil {
			t.Fatalf("parse after a crash: %v (want ErrProviderDown or success)", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not come back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("saw the provider down: %v", sawDown)
	if reg.Version() != version {
		t.Errorf("a crash and restart changed the analyser set version %d → %d", version, reg.Version())
	}
}
