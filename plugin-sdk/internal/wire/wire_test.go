package wire

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// TestBufferPoolTiers checks that the process's gRPC buffer pool hands out
// buffers at most twice the size asked, up to the message limit: gRPC's
// default gave a 1 MiB buffer (cleared whole) for any message over 32 KiB.
func TestBufferPoolTiers(t *testing.T) {
	pool := mem.DefaultBufferPool()
	for _, size := range []int{300, 40 << 10, 70 << 10, 129 << 10, 3 << 20, MaxMessageSize} {
		b := pool.Get(size)
		if len(*b) != size || cap(*b) < size || cap(*b) > 2*size {
			t.Errorf("Get(%d): len %d cap %d, want len %d and cap in [%d, %d]", size, len(*b), cap(*b), size, size, 2*size)
		}
		pool.Put(b)
	}
}
