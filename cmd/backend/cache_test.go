package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.org/backend/core/storage"
)

// TestCacheSearchCLI stores items in the daemon's database before starting
// it, then searches them through the API and the CLI.
func TestCacheSearchCLI(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{DataDir: filepath.Join(e.dir, "data", "backend")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Client
	p := c.Profile.Create().SetName("alice").SaveX(ctx)
	node := c.PubsubNode.Create().SetProfile(p).SetService("alice@example").SetName("urn:xmpp:microblog:0").SetType("blog").SaveX(ctx)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i, it := range []struct{ id, published, tag, text string }{
		{"first", "2026-03-01T10:00:00Z", "go", "hello gophers"},
		{"second", "2026-03-02T10:00:00Z", "xmpp", "hello world"},
		{"third", "2026-03-03T10:00:00Z", "go", "goodbye"},
	} {
		c.PubsubItem.Create().SetNode(node).SetItemID(it.id).SetPublisher("alice@example").
			SetPayload([]byte("<entry xmlns='http://www.w3.org/2005/Atom'><title>" + it.id + "</title></entry>")).
			SetParsed([]byte(`{"published":"` + it.published + `","tags":["` + it.tag + `"]}`)).SetParseState("ok").
			SetSearchText(it.text).SetCreatedAt(base.Add(time.Duration(i) * time.Hour)).SaveX(ctx)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	e.serve(t)

	out, errOut, code := e.cli(t, "cache", "search", "-o", "json", "-p", "alice", "-F", "tags overlap go",
		"--order-by", "published:desc", "--with-payload")
	if code != exitOK {
		t.Fatalf("cache search: exit %d: %s %s", code, out, errOut)
	}
	var res struct {
		Items []map[string]json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Items) != 2 {
		t.Fatalf("items = %s", out)
	}
	// What the answer may miss: nothing unparsed; the node was never synced
	// (its items were stored by hand).
	if m := decode(t, out); jsonKeys(m) != "incomplete_nodes,items,skipped_unparsed" || m["skipped_unparsed"] != 0.0 ||
		!strings.Contains(out, `"incomplete_nodes":[{"profile":"alice","service":"alice@example","node":"urn:xmpp:microblog:0","state":"never"}]`) {
		t.Errorf("search answer: %s", out)
	}
	for _, k := range []string{"profile", "service", "node", "id", "parsed", "xml"} {
		if _, ok := res.Items[0][k]; !ok {
			t.Errorf("item lacks %q: %s", k, out)
		}
	}
	if string(res.Items[0]["id"]) != `"third"` || string(res.Items[1]["id"]) != `"first"` ||
		string(res.Items[0]["xml"]) != `"<item id='third' publisher='alice@example'><entry xmlns='http://www.w3.org/2005/Atom'><title>third</title></entry></item>"` ||
		!strings.Contains(string(res.Items[0]["parsed"]), `"published":"2026-03-03T10:00:00Z"`) {
		t.Errorf("search output: %s", out)
	}

	// Full text, between on RFC 3339 strings, paging, no payload.
	out, _, code = e.cli(t, "cache", "search", "-o", "json", "-f", "hello", "-F",
		`published between ["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"]`, "--limit", "5")
	if code != exitOK || !strings.Contains(out, `"id":"second"`) || strings.Contains(out, `"id":"first"`) || !strings.Contains(out, `"xml":null`) {
		t.Errorf("fts + between: %d %s", code, out)
	}
	out, _, code = e.cli(t, "cache", "search", "-o", "json", "--order-by", "item_id:desc", "--index", "1", "--limit", "1")
	if code != exitOK || !strings.Contains(out, `"id":"second"`) || strings.Count(out, `"id"`) != 1 {
		t.Errorf("paging: %d %s", code, out)
	}
	// The table: node, id, date and title (parsed, else from the payload);
	// one profile and one service: no such columns.
	out, _, code = e.cli(t, "cache", "search", "--order-by", "item_id")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 5 || !strings.HasPrefix(lines[0], "NODE ") || strings.Contains(out, "PROFILE") ||
		strings.Join(strings.Fields(lines[1]), " ") != "urn:xmpp:microblog:0 first 2026-03-01 10:00 first" || lines[4] != "3 items" ||
		strings.Contains(out, "<entry") {
		t.Errorf("table: %d\n%s", code, out)
	}

	// Malformed queries: usage errors naming the bad part; refusals.
	for _, bad := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-F", "tags nope x"}, exitUsage, `unknown operator "nope"`},
		{[]string{"-F", "a..b == 1"}, exitUsage, "empty key"},
		{[]string{"-f", `"open`}, exitUsage, "unterminated phrase"},
		{[]string{"--order-by", "creation:up"}, exitUsage, "direction"},
		{[]string{"--order-by", "rank"}, exitFailed, "needs a full-text query"},
		{[]string{"-p", "nobody"}, exitFailed, "unknown profile"},
	} {
		out, errOut, code := e.cli(t, append([]string{"cache", "search"}, bad.args...)...)
		if code != bad.code || !strings.Contains(out+errOut, bad.want) {
			t.Errorf("cache search %q: exit %d, %s%s; want exit %d and %q", bad.args, code, out, errOut, bad.code, bad.want)
		}
	}
}
