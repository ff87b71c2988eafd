package payloadcodec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"example.org/backend/internal/mbcorpus"
)

// TestDictionaryFrozen: stored rows depend on atom1.dict byte for byte; a
// change would make every packed payload unreadable. A better dictionary
// is a new codec byte.
func TestDictionaryFrozen(t *testing.T) {
	sum := sha256.Sum256(atom1Dict)
	if got, want := hex.EncodeToString(sum[:]), "160bb3d29fff5ec110c55a171d15183223aee6671fa84044ebc4e2d65e480f3c"; got != want {
		t.Fatalf("atom1.dict changed (sha256 %s, want %s): stored payloads packed with it would no longer unpack; add a new codec instead", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	c := mbcorpus.Corpus{Seed: 1, Author: "alice@example.org"}
	cases := map[string][]byte{
		"empty":     {},
		"tiny":      []byte("<x/>"),
		"nul first": append([]byte{0, 1}, []byte("<entry xmlns='http://www.w3.org/2005/Atom'><title>a</title></entry>")...),
		"nul only":  {0},
		"incompressible": func() []byte {
			b := make([]byte, 300)
			for i := range b {
				b[i] = byte(i*7919%251) + 1
			}
			return b
		}(),
		"post": []byte(c.Post(3).Payload),
		"big":  bytes.Repeat([]byte(c.Post(4).Payload), 200),
	}
	for name, p := range cases {
		stored := Pack(p)
		back, err := Unpack(stored)
		if err != nil || !bytes.Equal(back, p) {
			t.Errorf("%s: round trip: %v, %d bytes back of %d", name, err, len(back), len(p))
		}
		if len(p) > 0 && p[0] == 0 && stored[0] != 0 {
			t.Errorf("%s: a payload starting with NUL is stored unmarked", name)
		}
	}
	if s := Pack([]byte("<x/>")); string(s) != "<x/>" {
		t.Errorf("a tiny payload is packed: %q", s)
	}
}

// TestPackedSize: the corpus posts shrink to about half (the figure in
// docs/cache.md).
func TestPackedSize(t *testing.T) {
	c := mbcorpus.Corpus{Seed: 22, Author: "alice@localhost"}
	var raw, packed int
	for i := range 500 {
		p := []byte(c.Post(i).Payload)
		raw += len(p)
		packed += len(Pack(p))
	}
	if packed*10 > raw*6 {
		t.Errorf("500 posts: %d bytes packed of %d raw, want ≤ 60%%", packed, raw)
	}
	t.Logf("500 posts: %d → %d bytes per post", raw/500, packed/500)
}

func TestUnpackDamaged(t *testing.T) {
	good := Pack([]byte(mbcorpus.Corpus{Seed: 2, Author: "a@b"}.Post(0).Payload))
	for name, b := range map[string][]byte{
		"marker only":   {0},
		"unknown codec": {0, 9, 1, 2, 3},
		"truncated":     good[:len(good)/2],
		"garbage":       {0, codecAtom1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := Unpack(b); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %v, want ErrDamaged", name, err)
		}
	}
}

// FuzzUnpack: any stored bytes unpack or are refused as damaged; never a
// panic. And any payload packs and unpacks to itself.
func FuzzUnpack(f *testing.F) {
	f.Add(Pack([]byte(mbcorpus.Corpus{Seed: 3, Author: "a@b"}.Post(1).Payload)))
	f.Add([]byte("<entry/>"))
	f.Add([]byte{0, 1, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := Unpack(b); err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("error %v does not wrap ErrDamaged", err)
		}
		back, err := Unpack(Pack(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("round trip of %q: %v %q", b, err, back)
		}
	})
}

func BenchmarkUnpack(b *testing.B) {
	c := mbcorpus.Corpus{Seed: 22, Author: "alice@localhost"}
	var stored [][]byte
	for i := range 100 {
		stored = append(stored, Pack([]byte(c.Post(i).Payload)))
	}
	for i := 0; b.Loop(); i++ {
		if _, err := Unpack(stored[i%100]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPack(b *testing.B) {
	c := mbcorpus.Corpus{Seed: 22, Author: "alice@localhost"}
	var ps [][]byte
	for i := range 100 {
		ps = append(ps, []byte(c.Post(i).Payload))
	}
	for i := 0; b.Loop(); i++ {
		Pack(ps[i%100])
	}
}
