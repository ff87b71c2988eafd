package microblog_test

import (
	"context"
	"strings"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/xsstest"
)

// TestXSSCorpus parses the XSS corpus through a real plugin process, as
// the daemon would (one batch per parser), and checks every output with
// xsstest.Check: each string parsed as HTML holds only policy elements and
// attributes, each URL an allowed scheme. Every vector must parse (the
// sanitiser is what is tested) and keep its legitimate parts.
func TestXSSCorpus(t *testing.T) {
	c := startPlugin(t)
	n := runCorpus(t, c, []string{"microblog", "microblog-comments"})
	t.Logf("%d vectors checked", n)
}

func runCorpus(t *testing.T, c interface {
	Parse(context.Context, sdk.ParseRequest) ([]sdk.ParseResult, error)
}, parsers []string) int {
	t.Helper()
	checked := 0
	for _, parser := range parsers {
		var vs []xsstest.Vector
		for _, v := range xsstest.Vectors() {
			if v.Parser == parser {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			t.Fatalf("no vector for %s", parser)
		}
		req := sdk.ParseRequest{Profile: "p", Service: "mallory@evil.example", Node: vs[0].Node, Analyser: vs[0].Analyser, Parser: parser}
		for i, v := range vs {
			req.Items = append(req.Items, sdk.Item{ID: v.Name, Publisher: "mallory@evil.example", Payload: []byte(v.Payload)})
			_ = i
		}
		res, err := c.Parse(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			v := vs[i]
			if r.Err != nil {
				t.Errorf("%s: not parsed: %v", v.Name, r.Err)
				continue
			}
			for _, bad := range xsstest.Check(r.JSON, xsstest.ParserRules[parser]) {
				t.Errorf("%s: %s", v.Name, bad)
			}
			for _, k := range v.Keep {
				if !strings.Contains(string(r.JSON), k) {
					t.Errorf("%s: %q was lost: %s", v.Name, k, r.JSON)
				}
			}
			checked++
		}
	}
	return checked
}
