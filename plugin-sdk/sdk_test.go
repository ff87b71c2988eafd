package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/sdktest"
)

func base() *sdk.Plugin {
	return &sdk.Plugin{
		Name:      "t",
		Analysers: []sdk.Analyser{{Name: "a", Type: "x", NodePrefix: "urn:x"}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(p *sdk.Plugin)
		want   string
	}{
		{"ok", func(p *sdk.Plugin) {}, ""},
		{"bad name", func(p *sdk.Plugin) { p.Name = "Bad Name" }, "plugin name"},
		{"no analyser", func(p *sdk.Plugin) { p.Analysers = nil }, "no analyser"},
		{"upper analyser", func(p *sdk.Plugin) { p.Analysers[0].Name = "A" }, "lowercase"},
		{"duplicate analyser", func(p *sdk.Plugin) { p.Analysers = append(p.Analysers, p.Analysers[0]) }, "twice"},
		{"no type", func(p *sdk.Plugin) { p.Analysers[0].Type = "" }, "no type"},
		{"no prefix nor ns", func(p *sdk.Plugin) { p.Analysers[0].NodePrefix = "" }, "node prefix or a payload namespace"},
		{"parser without Parse", func(p *sdk.Plugin) { p.Analysers[0].Parser = "x" }, "no Parse"},
		{"match without Match", func(p *sdk.Plugin) { p.Analysers[0].Match = true }, "no Match"},
		{"bad param", func(p *sdk.Plugin) { p.Params = []sdk.Param{{Category: "A", Name: "b", Type: sdk.ParamBool}} }, "lowercase"},
		{"param type", func(p *sdk.Plugin) { p.Params = []sdk.Param{{Category: "a", Name: "b", Type: "float"}} }, "unknown type"},
		{"enum choices", func(p *sdk.Plugin) { p.Params = []sdk.Param{{Category: "a", Name: "b", Type: sdk.ParamEnum}} }, "no choices"},
		{"param twice", func(p *sdk.Plugin) {
			p.Params = []sdk.Param{{Category: "a", Name: "b", Type: sdk.ParamBool}, {Category: "a", Name: "b", Type: sdk.ParamInt}}
		}, "twice"},
	}
	for _, tt := range tests {
		p := base()
		tt.modify(p)
		err := p.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseEach(t *testing.T) {
	p := base()
	p.Analysers[0].Parser = "a"
	p.Parse = sdk.ParseEach(func(_ context.Context, req sdk.ParseRequest, it sdk.Item) (any, string, error) {
		switch it.ID {
		case "err":
			return nil, "", errors.New("bad item")
		case "panic":
			panic("kaboom")
		case "array":
			return json.RawMessage(`[1,2]`), "", nil
		case "raw":
			return []byte(`{"raw":true}`), "r", nil
		}
		return map[string]string{"id": it.ID, "node": req.Node, "pub": it.Publisher}, "text " + it.ID, nil
	})
	c := sdktest.Run(t, p)
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Node: "urn:x", Items: []sdk.Item{
		{ID: "ok", Publisher: "a@b"}, {ID: "err"}, {ID: "panic"}, {ID: "array"}, {ID: "raw"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 5 {
		t.Fatalf("results: %+v", res)
	}
	if string(res[0].JSON) != `{"id":"ok","node":"urn:x","pub":"a@b"}` || res[0].SearchText != "text ok" || res[0].Err != nil {
		t.Errorf("ok: %+v", res[0])
	}
	for i, want := range map[int]string{1: "bad item", 2: "panic while parsing item: kaboom", 3: "not a JSON object"} {
		if res[i].Err == nil || !strings.Contains(res[i].Err.Error(), want) || res[i].JSON != nil {
			t.Errorf("%d: %+v, want error %q", i, res[i], want)
		}
	}
	if string(res[4].JSON) != `{"raw":true}` {
		t.Errorf("raw: %+v", res[4])
	}
}

func TestParseContract(t *testing.T) {
	p := base()
	p.Analysers[0].Parser = "a"
	p.Parse = func(_ context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error) {
		switch req.Node {
		case "short":
			return nil, nil
		case "order":
			return []sdk.ParseResult{{ID: "2", JSON: []byte("{}")}, {ID: "1", JSON: []byte("{}")}}, nil
		case "fail":
			return nil, errors.New("database gone")
		case "panic":
			var m map[string]int
			m["x"] = 1
		}
		return []sdk.ParseResult{{JSON: []byte(`{}`)}, {JSON: []byte(`{}`)}}, nil
	}
	c := sdktest.Run(t, p)
	items := []sdk.Item{{ID: "1"}, {ID: "2"}}
	for node, want := range map[string]string{
		"short": "0 results for 2 items",
		"order": `has id "2", want "1"`,
		"fail":  "parse: database gone",
		"panic": "panic in Parse: assignment to entry in nil map",
	} {
		_, err := c.Parse(context.Background(), sdk.ParseRequest{Node: node, Items: items})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plugin t") {
			t.Errorf("%s: %v, want %q", node, err, want)
		}
	}
	res, err := c.Parse(context.Background(), sdk.ParseRequest{Node: "ids filled", Items: items})
	if err != nil || res[0].ID != "1" || res[1].ID != "2" {
		t.Errorf("ids: %+v %v", res, err)
	}
}

func TestMatchAndConfigure(t *testing.T) {
	p := base()
	p.Analysers[0].Match = true
	var inFlight, overlaps atomic.Int32
	p.Match = func(_ context.Context, req sdk.MatchRequest) (sdk.MatchResult, error) {
		if req.FirstItem == nil {
			return sdk.MatchResult{Drop: true}, nil
		}
		return sdk.MatchResult{Subtype: string(req.FirstItem.Payload) + "/" + req.Profile}, nil
	}
	p.Configure = func(_ context.Context, profile string, values map[string]string) error {
		if inFlight.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer inFlight.Add(-1)
		time.Sleep(time.Millisecond)
		if values["a.b"] == "bad" {
			return errors.New("a.b: bad value")
		}
		return nil
	}
	c := sdktest.Run(t, p)
	ctx := context.Background()
	res, err := c.Match(ctx, sdk.MatchRequest{Profile: "p", Node: "n", FirstItem: &sdk.Item{ID: "1", Payload: []byte("sub")}})
	if err != nil || res.Drop || res.Subtype != "sub/p" {
		t.Errorf("match: %+v %v", res, err)
	}
	if res, err := c.Match(ctx, sdk.MatchRequest{Node: "n"}); err != nil || !res.Drop {
		t.Errorf("match empty node: %+v %v", res, err)
	}
	done := make(chan error, 8)
	for range 8 {
		go func() { done <- c.Configure(ctx, "p", map[string]string{"a.b": "ok"}) }()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if overlaps.Load() != 0 {
		t.Error("Configure calls overlapped")
	}
	if err := c.Configure(ctx, "p", map[string]string{"a.b": "bad"}); err == nil || !strings.Contains(err.Error(), "a.b: bad value") {
		t.Errorf("configure error: %v", err)
	}
	c.Kill()
	if !c.Exited() {
		t.Error("not exited after Kill")
	}
}

func TestServeRefusesManualRun(t *testing.T) {
	t.Setenv(sdk.HandshakeCookieKey, "")
	err := sdk.Serve(base())
	if err == nil || !strings.Contains(err.Error(), "not meant to be run by hand") {
		t.Errorf("Serve without the daemon: %v", err)
	}
	if err := sdk.Serve(&sdk.Plugin{}); err == nil || !strings.Contains(err.Error(), "invalid plugin") {
		t.Errorf("Serve of an invalid plugin: %v", err)
	}
}

func TestLoggerOutsideHandler(t *testing.T) {
	if sdk.Logger(context.Background()) == nil || sdk.Logger(nil) == nil { //nolint:staticcheck // nil context is documented
		t.Error("no logger")
	}
}
