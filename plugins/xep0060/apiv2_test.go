package xep0060

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	backendv2 "example.org/backend/api/backendv2"
	"example.org/backend/plugins/xep0060/wire"
)

// bigPage is a page of n items of size bytes of payload each.
func bigPage(n, size int) *ItemsPage {
	p := &ItemsPage{Complete: true}
	for i := range n {
		body := strings.Repeat("x", size)
		p.Items = append(p.Items, wire.Item{ID: fmt.Sprint("it-", i), Publisher: "a@example", Payload: []byte("<p xmlns='urn:x'>" + body + "</p>")})
	}
	return p
}

// TestSendPageBounds: a streamed answer's messages hold at most ChunkItems
// items and about ChunkBytes of XML (one larger item alone), the header
// comes first, every item once and in order; the heap needed to encode a
// 32 MiB answer (measured, logged) is a message's, not the answer's.
func TestSendPageBounds(t *testing.T) {
	for _, tc := range []struct{ n, size int }{{0, 0}, {1, 10}, {1000, 10}, {2048, 16 << 10}, {3, 3 << 20}} {
		p := bigPage(tc.n, tc.size)
		var msgs, items, maxBytes int
		var header *backendv2.PubSubItemsHeader
		err := SendPage(p, func(m *backendv2.PubSubItemsChunk) error {
			if msgs == 0 {
				header = m.GetHeader()
			} else if m.GetHeader() != nil {
				t.Errorf("header in message %d", msgs)
			}
			for _, it := range m.GetItems() {
				if it.GetId() != fmt.Sprint("it-", items) {
					t.Fatalf("item %d is %s", items, it.GetId())
				}
				items++
			}
			b, _ := proto.Marshal(m)
			maxBytes = max(maxBytes, len(b))
			if len(m.GetItems()) > ChunkItems || (len(m.GetItems()) > 1 && len(b) > ChunkBytes+64<<10) {
				t.Errorf("%d×%d: message of %d items, %d bytes", tc.n, tc.size, len(m.GetItems()), len(b))
			}
			msgs++
			return nil
		})
		if err != nil || header == nil || header.GetItems() != int64(tc.n) || items != tc.n || !header.GetComplete() {
			t.Errorf("%d×%d: err %v header %v items %d", tc.n, tc.size, err, header, items)
		}
		t.Logf("%d items of %d bytes: %d messages, largest %d bytes", tc.n, tc.size, msgs, maxBytes)
	}
	// Live heap while encoding 32 MiB (a GC at the worst moment of each
	// way): v2 holds one message at a time, v1 the whole answer twice
	// (the message and its encoding).
	p := bigPage(2048, 16<<10)
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := live()
	var v2 uint64
	SendPage(p, func(m *backendv2.PubSubItemsChunk) error {
		b, _ := proto.Marshal(m)
		v2 = max(v2, live()-min(live(), base))
		runtime.KeepAlive(b)
		return nil
	})
	msg := PageToProto(p)
	b, _ := proto.Marshal(msg)
	v1 := live() - min(live(), base)
	runtime.KeepAlive(msg)
	runtime.KeepAlive(b)
	t.Logf("live heap beyond the 32 MiB page while encoding it: v1 (one message) %d MiB, v2 (streamed) %d MiB", v1>>20, v2>>20)
	if v2 > 8<<20 {
		t.Errorf("streaming a 32 MiB answer held %d MiB beyond the page", v2>>20)
	}
}
