package pep_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/host"
	"example.org/backend/plugin-sdk/plugins/internal/golden"
	"example.org/backend/plugin-sdk/plugins/pep"
	"example.org/backend/plugin-sdk/plugins/xsstest"
	"example.org/backend/plugin-sdk/sdktest"
)

const serveEnv = "PEP_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if err := sdk.Serve(pep.New()); err != nil {
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// startPlugin runs the plugin as a real process (this test binary
// re-executed), the way the daemon runs a plugin.
func startPlugin(t testing.TB) *host.Client {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{serveEnv + "=1"}
	c, err := host.Start(context.Background(), host.Config{Name: "pep", Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	return c
}

func TestDescribe(t *testing.T) {
	d, err := sdktest.Run(t, pep.New()).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range d.Analysers {
		if !a.ToSync || a.Match {
			t.Errorf("%s: to_sync %v, match %v", a.Name, a.ToSync, a.Match)
		}
		got = append(got, strings.Join([]string{a.Name, a.Type, a.NodePrefix, a.PayloadNamespace, a.Parser,
			strings.Join(a.IndexedPaths, "+")}, " "))
	}
	want := []string{
		"xep-0402 bookmarks urn:xmpp:bookmarks:1 urn:xmpp:bookmarks:1 bookmarks jid+name+autojoin",
		"xep-0084 avatar urn:xmpp:avatar:metadata urn:xmpp:avatar:metadata avatar-metadata avatar.id+avatar.type",
		"xep-0292 vcard urn:xmpp:vcard4 urn:ietf:params:xml:ns:vcard-4.0 vcard4 fn+nicknames",
		"xep-0172 nickname http://jabber.org/protocol/nick http://jabber.org/protocol/nick nickname nick",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || d.Name != "pep" {
		t.Errorf("%s: analysers\n%s\nwant\n%s", d.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The hand-written golden cases (testdata/golden), in process and through
// a plugin process.
func TestGolden(t *testing.T) {
	t.Run("in-process", func(t *testing.T) { golden.Run(t, "testdata/golden", sdktest.Run(t, pep.New())) })
	t.Run("process", func(t *testing.T) { golden.Run(t, "testdata/golden", startPlugin(t)) })
}

// TestXSSCorpus: the PEP vectors of the XSS corpus through a plugin
// process; every output field checked with xsstest.Check.
func TestXSSCorpus(t *testing.T) {
	c := startPlugin(t)
	n := 0
	for _, v := range xsstest.Vectors() {
		rules, ok := xsstest.ParserRules[v.Parser]
		if !ok || strings.HasPrefix(v.Parser, "microblog") {
			continue
		}
		res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "p", Service: "mallory@evil.example", Node: v.Node,
			Analyser: v.Analyser, Parser: v.Parser, Items: []sdk.Item{{ID: "x@conference.evil.example", Payload: []byte(v.Payload)}}})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil {
			t.Errorf("%s: not parsed: %v", v.Name, res[0].Err)
			continue
		}
		for _, bad := range xsstest.Check(res[0].JSON, rules) {
			t.Errorf("%s: %s", v.Name, bad)
		}
		for _, k := range v.Keep {
			if !strings.Contains(string(res[0].JSON), k) {
				t.Errorf("%s: %q was lost: %s", v.Name, k, res[0].JSON)
			}
		}
		n++
	}
	if n != 4 {
		t.Errorf("%d PEP vectors checked, want 4", n)
	}
}

// Hostile payloads are refused or parsed, never a crash: deep nesting,
// many elements, a parser the plugin does not have.
func TestHostile(t *testing.T) {
	c := sdktest.Run(t, pep.New())
	deep := strings.Repeat("<x>", 5000) + strings.Repeat("</x>", 5000)
	items := []sdk.Item{
		{ID: "1", Payload: []byte(`<vcard xmlns="urn:ietf:params:xml:ns:vcard-4.0"><fn>` + deep + `<text>deep</text></fn></vcard>`)},
		{ID: "2", Payload: []byte(`<vcard xmlns="urn:ietf:params:xml:ns:vcard-4.0">` + strings.Repeat("<nickname><text>n</text></nickname>", 20000) + `</vcard>`)},
		{ID: "3", Payload: []byte(`<vcard xmlns="urn:ietf:params:xml:ns:vcard-4.0"><fn><text>unclosed`)},
		{ID: "4", Payload: []byte(``)},
	}
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "p", Parser: "vcard4", Analyser: "xep-0292", Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !strings.Contains(string(res[0].JSON), `"fn":"deep"`) {
		t.Errorf("deep: %v %s", res[0].Err, res[0].JSON)
	}
	var many pep.VCard
	if res[1].Err != nil || json.Unmarshal(res[1].JSON, &many) != nil || len(many.Nicknames) != 20000 {
		t.Errorf("many: %v %.200s", res[1].Err, res[1].JSON)
	}
	if res[2].Err == nil || res[3].Err == nil || !strings.Contains(res[3].Err.Error(), "not the expected payload") {
		t.Errorf("truncated / empty: %v / %v", res[2].Err, res[3].Err)
	}
	res, err = c.Parse(context.Background(), sdk.ParseRequest{Profile: "p", Parser: "nope", Items: items[:1]})
	if err != nil || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), `no parser "nope"`) {
		t.Errorf("unknown parser: %v %v", err, res)
	}
}
