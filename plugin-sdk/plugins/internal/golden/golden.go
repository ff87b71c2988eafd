// Package golden runs the hand-written golden tests of the first-party
// parsers: each case is a payload (NAME.xml) and what the parser must make
// of it (NAME.json), both written by hand from the specifications and from
// how clients publish. Nothing here writes a golden file: a parser that
// disagrees fails, it never rewrites the expectation.
package golden

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	sdk "example.org/backend/plugin-sdk"
)

// Case is a NAME.json file.
type Case struct {
	// Source says where the payload comes from (an XEP example, a client).
	Source string `json:"source"`
	// Request is how the daemon would ask.
	Request struct {
		ID        string `json:"id"`
		Publisher string `json:"publisher"`
		Service   string `json:"service"`
		Node      string `json:"node"`
		Analyser  string `json:"analyser"`
		Parser    string `json:"parser"`
	} `json:"request"`
	// Parsed is the expected JSON; Error, when set, a substring of the
	// expected per-item error instead.
	Parsed     json.RawMessage `json:"parsed"`
	SearchText *string         `json:"search_text"`
	Error      string          `json:"error"`
}

// Parser is what the cases run through: the daemon's client of a plugin
// (in process with sdktest, or a real plugin process).
type Parser interface {
	Parse(ctx context.Context, req sdk.ParseRequest) ([]sdk.ParseResult, error)
}

// Load reads the cases of dir (NAME.json with NAME.xml beside it).
func Load(t testing.TB, dir string) map[string]Case {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases in %s (%v)", dir, err)
	}
	out := map[string]Case{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c Case
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = c
	}
	return out
}

// Run parses every case of dir with p, one batch for all of them (as the
// daemon sends them), and compares each result with its expectation.
func Run(t *testing.T, dir string, p Parser) {
	t.Helper()
	cases := Load(t, dir)
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := cases[name]
		payload, err := os.ReadFile(filepath.Join(dir, name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		r := c.Request
		res, err := p.Parse(context.Background(), sdk.ParseRequest{Profile: "golden", Service: r.Service, Node: r.Node,
			Analyser: r.Analyser, Parser: r.Parser, Items: []sdk.Item{{ID: r.ID, Publisher: r.Publisher, Payload: payload}}})
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		if len(res) != 1 || res[0].ID != r.ID {
			t.Fatalf("%s: results %+v", name, res)
		}
		t.Run(name, func(t *testing.T) { check(t, c, res[0]) })
	}
}

func check(t *testing.T, c Case, res sdk.ParseResult) {
	if c.Error != "" {
		if res.Err == nil || !strings.Contains(res.Err.Error(), c.Error) {
			t.Fatalf("error = %v, want one containing %q", res.Err, c.Error)
		}
		return
	}
	if res.Err != nil {
		t.Fatalf("parse error: %v", res.Err)
	}
	var got, want any
	if err := json.Unmarshal(res.JSON, &got); err != nil {
		t.Fatalf("parsed JSON: %v", err)
	}
	if err := json.Unmarshal(c.Parsed, &want); err != nil {
		t.Fatalf("expected JSON: %v", err)
	}
	for _, d := range Diff("", want, got) {
		t.Error(d)
	}
	if c.SearchText != nil && res.SearchText != *c.SearchText {
		t.Errorf("search text = %q, want %q", res.SearchText, *c.SearchText)
	}
}

// Diff lists the differences between two decoded JSON values, by path.
func Diff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s, want an object", orRoot(path), show(got))}
		}
		var out []string
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !wok:
				out = append(out, fmt.Sprintf("%s.%s: unexpected key (value %s)", path, k, show(gv)))
			case !gok:
				out = append(out, fmt.Sprintf("%s.%s: missing (want %s)", path, k, show(wv)))
			default:
				out = append(out, Diff(path+"."+k, wv, gv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %s, want %s", orRoot(path), show(got), show(want))}
		}
		var out []string
		for i := range w {
			out = append(out, Diff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: got %s, want %s", orRoot(path), show(got), show(want))}
		}
		return nil
	}
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
