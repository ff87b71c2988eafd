package pubsubcache

import "testing"

// TestSearchTextOf: the parser's lines that repeat the payload's text (same
// terms, in order, next to each other, case folded) are left out; the
// others are kept, so every word and phrase of both still matches.
func TestSearchTextOf(t *testing.T) {
	payload := "Hidden garlic letter alice xmpp:alice@localhost 2025-03-01 Bright reader, river pepper."
	tests := []struct {
		name, parser, want string
	}{
		{"no parser text", "", payload},
		{"title and content repeat the payload", "Hidden garlic letter\nbright READER river pepper", payload},
		{"a tag that is a word of the payload", "xmpp", payload},
		{"a word only inside another word is kept", "gar", payload + "\ngar"},
		{"same words in another order are kept", "letter garlic", payload + "\nletter garlic"},
		{"new text is kept, repeats dropped", "Hidden garlic\n  Alice Smith  \n\n", payload + "\nAlice Smith"},
		{"punctuation only", "-- !", payload},
		{"empty payload text", "Alice", "Alice"},
	}
	for _, tt := range tests {
		p := payload
		if tt.name == "empty payload text" {
			p = ""
		}
		if got := searchTextOf(p, tt.parser); got != tt.want {
			t.Errorf("%s: searchTextOf = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestFTSText(t *testing.T) {
	if ftsText("") != " " || ftsText("a b") != "a b" {
		t.Errorf(`ftsText("") = %q, ftsText("a b") = %q`, ftsText(""), ftsText("a b"))
	}
}
