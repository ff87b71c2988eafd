package testsvc

import (
	"bytes"
	"sync"
)

// LogBuffer is a goroutine-safe log sink for tests (an slog handler's
// writer): what was logged, read with String while the code under test
// may still log. Its lock guards its buffer.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything logged so far.
func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
