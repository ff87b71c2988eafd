// Command hello is a complete example plugin: it analyses nodes under
// "urn:example:hello", parses their <greeting xmlns="urn:example:hello">
// payloads, and has one per-profile parameter. README.md walks through it.
package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"sync"

	sdk "example.org/backend/plugin-sdk"
)

func main() {
	if err := sdk.Serve(newPlugin()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// greeting is the payload: <greeting xmlns="urn:example:hello" to="…">text</greeting>.
type greeting struct {
	XMLName xml.Name `xml:"urn:example:hello greeting"`
	To      string   `xml:"to,attr"`
	Text    string   `xml:",chardata"`
}

func newPlugin() *sdk.Plugin {
	var mu sync.Mutex
	shout := map[string]bool{} // profile → hello.shout
	return &sdk.Plugin{
		Name:    "hello",
		Version: "1.0.0",
		Analysers: []sdk.Analyser{{
			Name: "hello", Type: "greeting", NodePrefix: "urn:example:hello",
			ToSync: true, Parser: "hello", IndexedPaths: []string{"to"},
		}},
		Params: []sdk.Param{{
			Category: "hello", Name: "shout", Type: sdk.ParamBool, Default: "false",
			Help: "store greetings in capitals",
		}},
		Configure: func(_ context.Context, profile string, values map[string]string) error {
			mu.Lock()
			defer mu.Unlock()
			shout[profile] = values["hello.shout"] == "true"
			return nil
		},
		Parse: sdk.ParseEach(func(ctx context.Context, req sdk.ParseRequest, it sdk.Item) (any, string, error) {
			var g greeting
			if err := xml.Unmarshal(it.Payload, &g); err != nil {
				return nil, "", fmt.Errorf("not a greeting: %w", err)
			}
			mu.Lock()
			if shout[req.Profile] {
				g.Text = strings.ToUpper(g.Text)
			}
			mu.Unlock()
			sdk.Logger(ctx).Debug("parsed a greeting", "item", it.ID)
			return map[string]string{"to": g.To, "text": g.Text}, g.Text, nil
		}),
	}
}
