package microblog_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/microblog"
	"example.org/backend/plugin-sdk/sdktest"
)

const richPost = `<entry xmlns="http://www.w3.org/2005/Atom"><title>t</title><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>hi <b>there</b></p></div></content></entry>`

func TestDescribe(t *testing.T) {
	c := sdktest.Run(t, microblog.New())
	d, err := c.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "microblog" || d.ProtocolVersion != sdk.ProtocolVersion || d.SDKVersion != sdk.Version {
		t.Errorf("identity = %+v", d)
	}
	if len(d.Analysers) != 2 {
		t.Fatalf("analysers = %+v", d.Analysers)
	}
	ca := d.Analysers[1]
	if ca.Name != "xep-0277-comments" || ca.Type != "blog" || ca.Subtype != "comment" || ca.NodePrefix != "urn:xmpp:microblog:0:comments/" ||
		ca.PayloadNamespace != "http://www.w3.org/2005/Atom" || !ca.ToSync || ca.Priority <= d.Analysers[0].Priority ||
		ca.Parser != "microblog-comments" || strings.Join(ca.IndexedPaths, ",") != "parent_item,author.jid,published" {
		t.Errorf("comments analyser = %+v", ca)
	}
	a := d.Analysers[0]
	if a.Name != "xep-0277" || a.Type != "blog" || a.NodePrefix != "urn:xmpp:microblog:0" ||
		a.PayloadNamespace != "http://www.w3.org/2005/Atom" || !a.ToSync || a.Priority != 0 || !a.Match ||
		a.Parser != "microblog" || !strings.Contains(strings.Join(a.IndexedPaths, ","), "author.name") {
		t.Errorf("analyser = %+v", a)
	}
	if len(d.Params) != 1 || d.Params[0].Key() != "microblog.keep_xhtml" || d.Params[0].Type != sdk.ParamBool || d.Params[0].Default != "true" {
		t.Errorf("params = %+v", d.Params)
	}
}

func TestMatch(t *testing.T) {
	c := sdktest.Run(t, microblog.New())
	for node, want := range map[string]string{
		"urn:xmpp:microblog:0":                  "",
		"urn:xmpp:microblog:0:comments/abc-123": "comment",
		"urn:xmpp:microblog:0:commentsXX/abc":   "",
	} {
		res, err := c.Match(context.Background(), sdk.MatchRequest{Profile: "p", Node: node, Analyser: "xep-0277"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Drop || res.Subtype != want {
			t.Errorf("%s: %+v, want subtype %q", node, res, want)
		}
	}
}

func parseOne(t *testing.T, c interface {
	Parse(context.Context, sdk.ParseRequest) ([]sdk.ParseResult, error)
}, profile string) map[string]any {
	t.Helper()
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: profile, Node: microblog.NodePrefix, Analyser: "xep-0277", Parser: "microblog",
		Items: []sdk.Item{{ID: "1", Payload: []byte(richPost)}}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	var m map[string]any
	if err := json.Unmarshal(res[0].JSON, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestKeepXHTMLParameter(t *testing.T) {
	ctx := context.Background()
	c := sdktest.Run(t, microblog.New())
	if m := parseOne(t, c, "alice"); m["content_xhtml"] == nil {
		t.Fatal("default keeps no xhtml")
	}
	if err := c.Configure(ctx, "alice", map[string]string{"microblog.keep_xhtml": "false"}); err != nil {
		t.Fatal(err)
	}
	if m := parseOne(t, c, "alice"); m["content_xhtml"] != nil || m["content"] != "hi there" {
		t.Errorf("alice after keep_xhtml=false: %v", m)
	}
	if m := parseOne(t, c, "bob"); m["content_xhtml"] == nil {
		t.Error("bob lost his xhtml")
	}
	if err := c.Configure(ctx, "alice", map[string]string{"microblog.keep_xhtml": "maybe"}); err == nil || !strings.Contains(err.Error(), "maybe") {
		t.Errorf("bad value accepted: %v", err)
	}
	if err := c.Configure(ctx, "alice", nil); err != nil { // profile deleted
		t.Fatal(err)
	}
	if m := parseOne(t, c, "alice"); m["content_xhtml"] == nil {
		t.Error("a deleted profile keeps its setting")
	}
}

func TestParseBatchWithBadItem(t *testing.T) {
	c := sdktest.Run(t, microblog.New())
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Profile: "p", Items: []sdk.Item{
		{ID: "a", Payload: []byte(richPost)},
		{ID: "b", Payload: []byte(`<not-atom/>`)},
		{ID: "c", Publisher: "x@y/z", Payload: []byte(richPost)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Err != nil || res[1].Err == nil || res[2].Err != nil {
		t.Fatalf("results = %+v", res)
	}
	if !strings.Contains(res[1].Err.Error(), "not an Atom entry") {
		t.Errorf("error = %v", res[1].Err)
	}
	if res[0].SearchText != "t\nhi there" || res[2].ID != "c" {
		t.Errorf("results = %+v", res)
	}
}
