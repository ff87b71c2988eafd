package sdk

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// reference is what IsJSONObject must accept: encoding/json's Valid, on a
// document whose first non-space byte opens an object.
func reference(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

var jsonCases = []string{
	`{}`, ` {} `, "\t{\n}\r\n", `{"a":1}`, `{"a":[1,2,{"b":null}],"c":true,"d":false}`,
	`{"a":"\u00e9\n\"\\\/\b\f\r\t"}`, `{"a":-0.5e+10,"b":0,"c":1E-2,"d":12.0}`,
	`{"é":"ü","emoji":"😀"}`, `{"a":{}, "b":[], "c":[[]], "d":[{}]}`, `{"a" : 1 , "b" : [ 1 , 2 ] }`,
	// Invalid ones.
	``, ` `, `[]`, `"a"`, `1`, `null`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`,
	`{"a":[1,]}`, `{"a":[,1]}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":True}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"\x01\"}",
	`{"a":"unterminated}`, `{a:1}`, `{'a':1}`, `{"a":1}}`, `{"a":1} x`, `{"a":1}{}`, `{"a":[}`, `{"a":{]}`,
	`{"a":NaN}`, `{"a":Infinity}`, "{\"a\":1}\x00", `{"a":"\ud800"}`, "{\"a\":\"\xff\"}",
}

func TestIsJSONObject(t *testing.T) {
	for _, c := range jsonCases {
		if got, want := IsJSONObject([]byte(c)), reference([]byte(c)); got != want {
			t.Errorf("IsJSONObject(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// Nesting: encoding/json's limit (10 000), and far beyond it without
	// growing a stack per level.
	for _, depth := range []int{9999, 10000, 10001, 1 << 20} {
		doc := []byte(`{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`)
		if got, want := IsJSONObject(doc), reference(doc); got != want {
			t.Errorf("depth %d: %v, encoding/json says %v", depth, got, want)
		}
	}
}

// FuzzIsJSONObject: IsJSONObject accepts exactly what encoding/json does.
func FuzzIsJSONObject(f *testing.F) {
	for _, c := range jsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := IsJSONObject(b), reference(b); got != want {
			t.Fatalf("IsJSONObject(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkIsJSONObject(b *testing.B) {
	doc := []byte(`{"id":"1","title":"A post","content":"Some rich text with a link.","content_xhtml":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Some <b>rich</b> text</p></div>",` +
		`"published":"2024-05-01T10:00:00Z","author":{"name":"Romeo","uri":"xmpp:romeo@montague.lit","jid":"romeo@montague.lit","jid_verified":true},"tags":["go","xmpp"],"links":[],"n":-1.5e3}`)
	b.Run("IsJSONObject", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !IsJSONObject(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !reference(doc) {
				b.Fatal("invalid")
			}
		}
	})
}
