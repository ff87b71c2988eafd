package main

import (
	"strings"
	"testing"
)

// A failed test's output (its log lines and the reason it failed) is
// printed; a passing test's is not.
func TestFailedOutputPrinted(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestOK"}`,
		`{"Action":"output","Package":"p","Test":"TestOK","Output":"quiet line\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestOK"}`,
		`{"Action":"run","Package":"p","Test":"TestBad"}`,
		`{"Action":"output","Package":"p","Test":"TestBad","Output":"    x_test.go:9: uses-server: prosody\n"}`,
		`{"Action":"output","Package":"p","Test":"TestBad","Output":"    x_test.go:10: want 3, got 2\n"}`,
		`{"Action":"output","Package":"p","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestBad"}`,
		`{"Action":"fail","Package":"p"}`,
	}, "\n")
	var out strings.Builder
	code := summarise(strings.NewReader(in), &out, true, nil)
	got := out.String()
	if code == 0 {
		t.Error("a failed test gave exit code 0")
	}
	for _, want := range []string{"want 3, got 2", "--- FAIL: TestBad", "1 passed, 1 failed, 0 skipped", "prosody"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "quiet line") {
		t.Errorf("a passing test's output was printed:\n%s", got)
	}
}
