package payloadcodec

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"example.org/backend/internal/mbcorpus"
)

// parsedOf stands in for the microblog parser: a JSON object repeating
// the post's strings, as parsers do.
func parsedOf(p mbcorpus.Post) []byte {
	b, _ := json.Marshal(map[string]any{"id": p.ID, "title": p.Title, "tags": p.Tags, "node": "urn:xmpp:microblog:0", "content": p.Payload[len(p.Payload)/3 : len(p.Payload)/2]})
	return b
}

func TestParsedRoundTrip(t *testing.T) {
	c := mbcorpus.Corpus{Seed: 5, Author: "alice@example.org"}
	var raw, packed int
	for i := range 200 {
		p := c.Post(i)
		j := parsedOf(p)
		stored := PackParsed(j, []byte(p.Payload))
		back, err := UnpackParsed(stored, []byte(p.Payload))
		if err != nil || !bytes.Equal(back, j) {
			t.Fatalf("post %d: round trip: %v", i, err)
		}
		raw += len(j)
		packed += len(stored)
	}
	if packed*2 > raw {
		t.Errorf("200 documents: %d bytes packed of %d, want ≤ half", packed, raw)
	}
	for name, j := range map[string][]byte{"tiny": []byte(`{"a":1}`), "no payload": []byte(`{"title":"a title long enough to be packed, if it could"}`)} {
		if s := PackParsed(j, nil); !bytes.Equal(s, j) {
			t.Errorf("%s: stored %q, want the JSON itself", name, s)
		}
		if back, err := UnpackParsed(j, nil); err != nil || !bytes.Equal(back, j) {
			t.Errorf("%s: raw JSON read back as %q, %v", name, back, err)
		}
	}
}

// TestParsedDamaged: a stored form that is not one PackParsed wrote for
// this payload is refused, never returned (another payload included: S2
// would decode it to other bytes without an error).
func TestParsedDamaged(t *testing.T) {
	c := mbcorpus.Corpus{Seed: 6, Author: "a@b"}
	p, q := c.Post(0), c.Post(1)
	good := PackParsed(parsedOf(p), []byte(p.Payload))
	if good[0] != 0 {
		t.Fatal("not packed")
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0x20
	changed := []byte(p.Payload)
	changed = append(bytes.Clone(changed[:len(changed)/2]), changed[len(changed)/2+1:]...)
	for name, tc := range map[string]struct{ stored, payload []byte }{
		"marker only":     {[]byte{0}, []byte(p.Payload)},
		"unknown codec":   {[]byte{0, 9, 1, 2, 3, 4, 5}, []byte(p.Payload)},
		"truncated":       {good[:len(good)/2], []byte(p.Payload)},
		"flipped":         {flipped, []byte(p.Payload)},
		"other payload":   {good, []byte(q.Payload)},
		"payload changed": {good, changed},
		"no payload":      {good, nil},
	} {
		if b, err := UnpackParsed(tc.stored, tc.payload); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %q, %v, want ErrDamaged", name, b, err)
		}
	}
}

// FuzzUnpackParsed: any stored bytes unpack or are refused as damaged.
func FuzzUnpackParsed(f *testing.F) {
	p := mbcorpus.Corpus{Seed: 3, Author: "a@b"}.Post(1)
	f.Add(PackParsed(parsedOf(p), []byte(p.Payload)), []byte(p.Payload))
	f.Add([]byte(`{"a":"b"}`), []byte("<entry/>"))
	f.Fuzz(func(t *testing.T, stored, payload []byte) {
		if _, err := UnpackParsed(stored, payload); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("error %v does not wrap ErrDamaged", err)
		}
		if len(stored) > 0 && stored[0] == 0 {
			return
		}
		back, err := UnpackParsed(PackParsed(stored, payload), payload)
		if err != nil || !bytes.Equal(back, stored) {
			t.Fatalf("round trip of %q: %v %q", stored, err, back)
		}
	})
}

func BenchmarkUnpackParsed(b *testing.B) {
	c := mbcorpus.Corpus{Seed: 22, Author: "alice@localhost"}
	var stored, payloads [][]byte
	for i := range 100 {
		p := c.Post(i)
		payloads = append(payloads, []byte(p.Payload))
		stored = append(stored, PackParsed(parsedOf(p), payloads[i]))
	}
	for i := 0; b.Loop(); i++ {
		if _, err := UnpackParsed(stored[i%100], payloads[i%100]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackParsed(b *testing.B) {
	c := mbcorpus.Corpus{Seed: 22, Author: "alice@localhost"}
	var docs, payloads [][]byte
	for i := range 100 {
		p := c.Post(i)
		payloads = append(payloads, []byte(p.Payload))
		docs = append(docs, parsedOf(p))
	}
	for i := 0; b.Loop(); i++ {
		PackParsed(docs[i%100], payloads[i%100])
	}
}
