package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func openBox(t *testing.T, dir string) *Box {
	t.Helper()
	b, err := OpenBox(dir)
	if err != nil {
		t.Fatalf("OpenBox: %v", err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := openBox(t, t.TempDir())
	tests := []struct {
		name  string
		plain []byte
		aad   string
	}{
		{"password", []byte("correct horse battery staple"), "alice/connection.password"},
		{"empty", []byte{}, "alice/x.y"},
		{"binary", []byte{0, 1, 2, 255}, ""},
		{"long", bytes.Repeat([]byte("z"), 1<<16), "bob/plugin.token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := b.Seal(tt.plain, tt.aad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(tt.plain) >= 4 && bytes.Contains(ct, tt.plain) {
				t.Fatalf("ciphertext contains the plaintext")
			}
			got, err := b.Open(ct, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plain) {
				t.Fatalf("Open = %q, want %q", got, tt.plain)
			}
			ct2, _ := b.Seal(tt.plain, tt.aad)
			if bytes.Equal(ct, ct2) {
				t.Fatalf("two seals of the same value are equal: nonce not random")
			}
		})
	}
}

func TestOpenFailures(t *testing.T) {
	b := openBox(t, t.TempDir())
	plain := []byte("hunter2-hunter2")
	ct, err := b.Seal(plain, "alice/connection.password")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name string
		ct   []byte
		aad  string
		want error
	}{
		{"wrong aad", ct, "bob/connection.password", ErrCorrupt},
		{"empty aad", ct, "", ErrCorrupt},
		{"tampered body", flip(len(ct) - 20), "alice/connection.password", ErrCorrupt},
		{"tampered tag", flip(len(ct) - 1), "alice/connection.password", ErrCorrupt},
		{"tampered nonce", flip(headerLen), "alice/connection.password", ErrCorrupt},
		{"unknown version", flip(0), "alice/connection.password", ErrCorrupt},
		{"truncated", ct[:overhead-1], "alice/connection.password", ErrCorrupt},
		{"empty", nil, "alice/connection.password", ErrCorrupt},
		{"other key id", flip(1), "alice/connection.password", ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Open(tt.ct, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %q, %v; want %v", got, err, tt.want)
			}
			if strings.Contains(err.Error(), string(plain)) {
				t.Fatalf("error shows the plaintext")
			}
		})
	}
}

func TestKeyFileCreation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "backend") // missing, nested
	b := openBox(t, dir)
	if want := filepath.Join(dir, KeyFileName); b.KeyPath() != want {
		t.Fatalf("KeyPath = %q, want %q", b.KeyPath(), want)
	}
	fi, err := os.Stat(b.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != keySize {
		t.Fatalf("key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), keySize)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm()&0o077 != 0 {
		t.Fatalf("data dir mode %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want only the key file", len(entries))
	}
	// Reopening loads the same key.
	b2 := openBox(t, dir)
	if b2.KeyID() != b.KeyID() {
		t.Fatalf("reopened key id %s, want %s", b2.KeyID(), b.KeyID())
	}
	ct, _ := b.Seal([]byte("x"), "a")
	if got, err := b2.Open(ct, "a"); err != nil || string(got) != "x" {
		t.Fatalf("reopened box: Open = %q, %v", got, err)
	}
}

func TestKeyFileRefused(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{"group and world readable", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, keySize), 0o644)
		}, "chmod 600"},
		{"group readable", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, keySize), 0o640)
		}, "readable by group or others"},
		{"too short", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, keySize-1), 0o600)
		}, "holds 31 bytes instead of 32"},
		{"empty", func(t *testing.T, path string) {
			writeFile(t, path, nil, 0o600)
		}, "move it away"},
		{"a directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeyFileName)
			tt.setup(t, path)
			_, err := OpenBox(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("OpenBox error = %v, want one naming %s and containing %q", err, path, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func TestRecreatedKey(t *testing.T) {
	dir := t.TempDir()
	old := openBox(t, dir)
	oldCT, err := old.Seal([]byte("old secret"), "alice/connection.password")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(old.KeyPath()); err != nil {
		t.Fatal(err)
	}
	b := openBox(t, dir)
	if b.KeyID() == old.KeyID() {
		t.Fatal("a recreated key has the old key id")
	}
	if _, err := b.Open(oldCT, "alice/connection.password"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old ciphertext under the new key: %v, want ErrWrongKey", err)
	}
	if !strings.Contains(ErrWrongKey.Error(), "backend profile set NAME KEY -") {
		t.Fatalf("ErrWrongKey does not say how to fix it: %v", ErrWrongKey)
	}
	newCT, err := b.Seal([]byte("new secret"), "alice/connection.password")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Open(newCT, "alice/connection.password"); err != nil || string(got) != "new secret" {
		t.Fatalf("new ciphertext: Open = %q, %v", got, err)
	}
	if _, err := old.Open(newCT, "alice/connection.password"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("new ciphertext under the old key: %v, want ErrWrongKey", err)
	}
	// Which key sealed a value is told without opening it.
	if id, ok := SealedKeyID(oldCT); !ok || id != old.KeyID() {
		t.Errorf("SealedKeyID(old) = %q %v, want %s", id, ok, old.KeyID())
	}
	if id, ok := SealedKeyID(newCT); !ok || id != b.KeyID() {
		t.Errorf("SealedKeyID(new) = %q %v", id, ok)
	}
	if _, ok := SealedKeyID([]byte{1, 2, 3}); ok {
		t.Error("SealedKeyID of garbage")
	}
	if !KeyExists(dir) || KeyExists(t.TempDir()) {
		t.Error("KeyExists")
	}
}

func TestConcurrentOpenBox(t *testing.T) {
	for round := range 20 {
		dir := filepath.Join(t.TempDir(), "data")
		const n = 8
		boxes := make([]*Box, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				boxes[i], errs[i] = OpenBox(dir)
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: OpenBox %d: %v", round, i, errs[i])
			}
			if boxes[i].KeyID() != boxes[0].KeyID() {
				t.Fatalf("round %d: box %d has key %s, box 0 has %s", round, i, boxes[i].KeyID(), boxes[0].KeyID())
			}
		}
		ct, err := boxes[0].Seal([]byte("shared"), "p/k")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := boxes[n-1].Open(ct, "p/k"); err != nil || string(got) != "shared" {
			t.Fatalf("round %d: cross Open = %q, %v", round, got, err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != KeyFileName {
			t.Fatalf("round %d: data dir holds %d entries, want only the key file", round, len(entries))
		}
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	b := openBox(t, t.TempDir())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aad := string(rune('a' + i))
			for range 100 {
				ct, err := b.Seal([]byte(aad), aad)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := b.Open(ct, aad); err != nil || string(got) != aad {
					t.Errorf("Open = %q, %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestOpenBoxEmptyDir(t *testing.T) {
	if _, err := OpenBox(""); err == nil {
		t.Fatal("OpenBox(\"\"): no error")
	}
}
