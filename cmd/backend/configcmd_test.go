package main

import (
	"bytes"
	"strings"
	"testing"
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
