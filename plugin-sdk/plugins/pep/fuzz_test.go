package pep_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	sdk "example.org/backend/plugin-sdk"
	"example.org/backend/plugin-sdk/plugins/pep"
	"example.org/backend/plugin-sdk/plugins/xsstest"
)

// FuzzParse: any payload, through any of the four parsers, is parsed or
// refused for that item alone, and what is parsed passes xsstest.Check.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.xml"))
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i))
	}
	parsers := []string{pep.ParserBookmarks, pep.ParserAvatar, pep.ParserVCard4, pep.ParserNickname}
	p := pep.New()
	f.Fuzz(func(t *testing.T, payload []byte, which uint8) {
		parser := parsers[int(which)%len(parsers)]
		res, err := p.Parse(context.Background(), sdk.ParseRequest{Parser: parser, Items: []sdk.Item{{ID: "x", Payload: payload}}})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil {
			return
		}
		if bad := xsstest.Check(res[0].JSON, xsstest.ParserRules[parser]); len(bad) > 0 {
			t.Fatalf("%s: %q", parser, bad)
		}
	})
}
