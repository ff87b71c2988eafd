// Package mbcorpus generates the benchmark corpus of the pubsub cache:
// seeded XEP-0277 microblog posts (Atom entries of about 800 bytes with a
// title, an author, dates, tags, links and a text body), the same for the
// same seed on every machine.
//
// A Corpus is immutable; Post is safe for concurrent use.
package mbcorpus

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Corpus is a seeded series of posts by one author.
type Corpus struct {
	// Seed picks the series: the same seed gives the same posts.
	Seed uint64
	// Author is the bare JID of the author (used in the ids and links).
	Author string
}

// Post is one generated item: its id and its payload (an Atom entry).
type Post struct {
	ID      string
	Payload string
	// Title and Tags are what the payload holds, for tests that search.
	Title string
	Tags  []string
}

var words = strings.Fields(`orchard garden river winter summer market letter
window lantern harbour morning evening village station bridge kitchen
library journey forest meadow island mountain valley thunder silver copper
paper engine signal ribbon pepper garlic onion apple cherry plum walnut
candle mirror ladder basket pillow blanket compass anchor sailor captain
doctor teacher painter baker farmer singer writer reader stranger friend
neighbour cousin brother sister quiet bright gentle sudden early late
golden hidden open broken simple careful patient curious honest ancient`)

var tags = strings.Fields(`travel food music books garden photos family work
code xmpp linux cycling weather cinema science history art news`)

// epoch is the date of post 0; post i is i hours later.
var epoch = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// Post returns post i of the corpus (i ≥ 0).
func (c Corpus) Post(i int) Post {
	r := rand.New(rand.NewPCG(c.Seed, uint64(i)))
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	sentence := func(n int) string {
		w := make([]string, n)
		for k := range w {
			w[k] = pick(words)
		}
		w[0] = strings.ToUpper(w[0][:1]) + w[0][1:]
		return strings.Join(w, " ") + "."
	}
	id := fmt.Sprintf("post-%05d-%04x", i, r.Uint32()&0xffff)
	title := strings.TrimSuffix(sentence(3+r.IntN(4)), ".")
	var body strings.Builder
	for body.Len() < 170+r.IntN(80) {
		if body.Len() > 0 {
			body.WriteByte(' ')
		}
		body.WriteString(sentence(6 + r.IntN(8)))
	}
	n := 1 + r.IntN(3)
	seen := map[string]bool{}
	var ts []string
	for len(ts) < n {
		if t := pick(tags); !seen[t] {
			seen[t] = true
			ts = append(ts, t)
		}
	}
	published := epoch.Add(time.Duration(i) * time.Hour)
	updated := published.Add(time.Duration(r.IntN(90)) * time.Minute)
	var b strings.Builder
	b.WriteString("<entry xmlns='http://www.w3.org/2005/Atom'>")
	fmt.Fprintf(&b, "<title type='text'>%s</title>", title)
	fmt.Fprintf(&b, "<author><name>%s</name><uri>xmpp:%s</uri></author>", strings.Split(c.Author, "@")[0], c.Author)
	fmt.Fprintf(&b, "<published>%s</published><updated>%s</updated>", published.Format(time.RFC3339), updated.Format(time.RFC3339))
	for _, t := range ts {
		fmt.Fprintf(&b, "<category term='%s'/>", t)
	}
	fmt.Fprintf(&b, "<id>xmpp:%s?;node=urn%%3Axmpp%%3Amicroblog%%3A0;item=%s</id>", c.Author, id)
	fmt.Fprintf(&b, "<link rel='replies' title='comments' href='xmpp:%s?;node=urn%%3Axmpp%%3Amicroblog%%3A0%%3Acomments%%2F%s'/>", c.Author, id)
	if r.IntN(2) == 0 {
		fmt.Fprintf(&b, "<link rel='related' href='https://%s.example.org/%s/%d'/>", pick(words), pick(words), r.IntN(1000))
	}
	fmt.Fprintf(&b, "<content type='text'>%s</content>", body.String())
	b.WriteString("</entry>")
	return Post{ID: id, Payload: b.String(), Title: title, Tags: ts}
}
