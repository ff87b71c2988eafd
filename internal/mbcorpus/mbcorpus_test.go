package mbcorpus

import (
	"encoding/xml"
	"strings"
	"testing"
)

// TestCorpus: posts are well-formed Atom entries of about 800 bytes,
// the same for the same seed, different ids for different posts.
func TestCorpus(t *testing.T) {
	c := Corpus{Seed: 1, Author: "alice@example.org"}
	ids := map[string]bool{}
	total := 0
	const n = 2000
	for i := range n {
		p := c.Post(i)
		if ids[p.ID] {
			t.Fatalf("post %d: id %s repeated", i, p.ID)
		}
		ids[p.ID] = true
		total += len(p.Payload)
		if err := xml.Unmarshal([]byte(p.Payload), new(struct{})); err != nil {
			t.Fatalf("post %d is not XML: %v\n%s", i, err, p.Payload)
		}
		if !strings.Contains(p.Payload, "<title type='text'>"+p.Title+"</title>") || len(p.Tags) == 0 {
			t.Fatalf("post %d: title or tags missing: %s", i, p.Payload)
		}
	}
	if mean := total / n; mean < 700 || mean > 900 {
		t.Errorf("mean payload %d bytes, want about 800", mean)
	} else {
		t.Logf("mean payload %d bytes; post 0: %s", mean, c.Post(0).Payload)
	}
	if a, b := c.Post(7).Payload, (Corpus{Seed: 1, Author: "alice@example.org"}).Post(7).Payload; a != b {
		t.Error("the same seed gives other posts")
	}
	if a, b := c.Post(7).Payload, (Corpus{Seed: 2, Author: "alice@example.org"}).Post(7).Payload; a == b {
		t.Error("another seed gives the same posts")
	}
}
