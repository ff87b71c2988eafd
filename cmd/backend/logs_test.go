package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects a daemon's stderr; tests read it while the daemon
// writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the JSON records logged so far (lines that are not JSON
// are left out: checkJSONLog reports them).
func (b *logBuffer) records() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitRecord waits until the daemon logged a record for which match is
// true and returns it.
func (b *logBuffer) waitRecord(t testing.TB, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, r := range b.records() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log record for %s; log:\n%s", what, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkJSONLog fails t for every line of a daemon's log that is not one
// JSON object, or that carries a key twice in an object.
func checkJSONLog(t testing.TB, log string) {
	t.Helper()
	bad := 0
	for i, line := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		if line == "" {
			continue
		}
		dups, err := duplicateKeys(line)
		if err != nil || len(dups) > 0 {
			t.Errorf("daemon log line %d is not one JSON object with distinct keys (duplicates %v, %v): %s", i+1, dups, err, line)
			if bad++; bad > 10 {
				return
			}
		}
	}
}

// duplicateKeys returns the keys that appear twice in one object of the
// JSON text line (nested objects included); an error when line is not
// exactly one JSON object.
func duplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	var dups []string
	var walk func(top bool) error
	walk = func(top bool) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if top && tok != json.Delim('{') {
			return errors.New("not a JSON object")
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := kt.(string)
				if seen[k] {
					dups = append(dups, k)
				}
				seen[k] = true
				if err := walk(false); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(false); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(true); err != nil {
		return dups, err
	}
	if dec.More() {
		return dups, errors.New("more than one JSON value")
	}
	return dups, nil
}

// TestDuplicateKeys is the checker's own test: it must catch what it is
// for.
func TestDuplicateKeys(t *testing.T) {
	for line, want := range map[string]string{
		`{"msg":"x","plugin":"a","plugin":"b"}`:   "plugin",
		`{"a":{"k":1,"k":2},"b":[{"c":1,"c":1}]}`: "k c",
		`{"msg":"x","a":{"msg":"y"}}`:             "",
	} {
		dups, err := duplicateKeys(line)
		if err != nil || strings.Join(dups, " ") != want {
			t.Errorf("%s: %v %v, want %q", line, dups, err, want)
		}
	}
	for _, line := range []string{`level=INFO msg=x`, `[1]`, `{"a":1} {"b":2}`, `{"a":`} {
		if _, err := duplicateKeys(line); err == nil {
			t.Errorf("%s accepted", line)
		}
	}
}
